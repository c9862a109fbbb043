//! VPC, internet gateway, subnets, route tables, S3 gateway endpoint, private-subnet NACL.

use crate::error::{AwsContext, Error, Missing, Result};
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, PortRange, ResourceType, RuleAction, Tag, TagSpecification,
    VpcEndpointType,
};

use super::{Change, Ctx};
use crate::policy::{TAG_INSTALLATION, s3_endpoint_policy};

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

fn tag_spec(ctx: &Ctx, rt: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(rt)
        .set_tags(Some(ec2_tags(ctx, name)))
        .build()
}

fn ec2_tags(ctx: &Ctx, name: &str) -> Vec<Tag> {
    ctx.tags(name)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Fields in which `have` lacks a managed tag.
fn tag_drift(ctx: &Ctx, name: &str, have: &[Tag]) -> Vec<String> {
    let mut d = Vec::new();
    for (k, v) in ctx.tags(name) {
        let got = have
            .iter()
            .find(|t| t.key() == Some(k.as_str()))
            .and_then(|t| t.value());
        if got != Some(v.as_str()) {
            d.push(format!("tag {k}: {} -> {v}", got.unwrap_or("(none)")));
        }
    }
    d
}

/// Filters for "this installation's resource called `name`".
fn ours(ctx: &Ctx, name: &str) -> Vec<Filter> {
    vec![
        filter(&format!("tag:{TAG_INSTALLATION}"), &ctx.cfg.names.prefix),
        filter("tag:Name", name),
    ]
}

async fn retag(ctx: &Ctx, id: &str, name: &str) -> Result<()> {
    ctx.ec2
        .create_tags()
        .resources(id)
        .set_tags(Some(ec2_tags(ctx, name)))
        .send()
        .await
        .aws("ec2:CreateTags", || format!("on {name} ({id})"))?;
    Ok(())
}

pub(super) async fn converge(ctx: &mut Ctx) -> Result<()> {
    vpc(ctx).await?;
    igw(ctx).await?;
    let public = ctx.cfg.names.public_subnet.clone();
    let private = ctx.cfg.names.private_subnet.clone();
    ctx.public_subnet_id =
        subnet(ctx, &public, &ctx.cfg.public_subnet_cidr.to_string(), true).await?;
    ctx.private_subnet_id = subnet(
        ctx,
        &private,
        &ctx.cfg.private_subnet_cidr.to_string(),
        false,
    )
    .await?;
    let (prt, pvrt) = (
        ctx.cfg.names.public_route_table.clone(),
        ctx.cfg.names.private_route_table.clone(),
    );
    let pub_sub = ctx.public_subnet_id.clone();
    let priv_sub = ctx.private_subnet_id.clone();
    ctx.public_rt_id = route_table(ctx, &prt, pub_sub.as_deref(), true).await?;
    ctx.private_rt_id = route_table(ctx, &pvrt, priv_sub.as_deref(), false).await?;
    endpoint(ctx).await?;
    nacl(ctx).await?;
    Ok(())
}

async fn vpc(ctx: &mut Ctx) -> Result<()> {
    let name = ctx.cfg.names.vpc.clone();
    let want_cidr = ctx.cfg.vpc_cidr.to_string();
    let found = ctx
        .ec2
        .describe_vpcs()
        .set_filters(Some(ours(ctx, &name)))
        .send()
        .await
        .aws("ec2:DescribeVpcs", || format!("for {name}"))?;
    match found.vpcs().first() {
        Some(v) => {
            let id = v.vpc_id().unwrap_or_default().to_string();
            if v.cidr_block() != Some(want_cidr.as_str()) {
                return Err(Error::Immutable {
                    resource: format!("VPC {name} ({id})"),
                    why: format!(
                        "has CIDR {} but the config asks for {want_cidr}: a VPC's block cannot be changed; destroy first",
                        v.cidr_block().unwrap_or("?")
                    ),
                });
            }
            let drift = tag_drift(ctx, &name, v.tags());
            ctx.vpc_id = Some(id.clone());
            if drift.is_empty() {
                ctx.record("vpc", &name, Some(&id), Change::Unchanged);
            } else {
                ctx.record("vpc", &name, Some(&id), Change::Update(drift));
                if ctx.apply() {
                    retag(ctx, &id, &name).await?;
                }
            }
        }
        None => {
            ctx.record("vpc", &name, None, Change::Create);
            if ctx.apply() {
                let r = ctx
                    .ec2
                    .create_vpc()
                    .cidr_block(&want_cidr)
                    .tag_specifications(tag_spec(ctx, ResourceType::Vpc, &name))
                    .send()
                    .await
                    .aws("ec2:CreateVpc", || format!("{name} ({want_cidr})"))?;
                let id = r
                    .vpc()
                    .and_then(|v| v.vpc_id())
                    .missing(|| "CreateVpc returned no id")?;
                ctx.vpc_id = Some(id.to_string());
            }
        }
    }
    Ok(())
}

async fn igw(ctx: &mut Ctx) -> Result<()> {
    let name = ctx.cfg.names.internet_gateway.clone();
    let found = ctx
        .ec2
        .describe_internet_gateways()
        .set_filters(Some(ours(ctx, &name)))
        .send()
        .await
        .aws("ec2:DescribeInternetGateways", || format!("for {name}"))?;
    let vpc = ctx.vpc_id.clone();
    let (id, mut drift) = match found.internet_gateways().first() {
        Some(g) => {
            let id = g.internet_gateway_id().unwrap_or_default().to_string();
            let attached: Vec<&str> = g.attachments().iter().filter_map(|a| a.vpc_id()).collect();
            let mut d = tag_drift(ctx, &name, g.tags());
            if vpc.as_deref().is_none_or(|v| !attached.contains(&v)) {
                d.push(format!(
                    "attached to: {} -> the ferry VPC",
                    if attached.is_empty() {
                        "(none)".into()
                    } else {
                        attached.join(",")
                    }
                ));
            }
            (Some(id), d)
        }
        None => (None, Vec::new()),
    };
    match &id {
        None => {
            ctx.record("internet-gateway", &name, None, Change::Create);
            if ctx.apply() {
                let r = ctx
                    .ec2
                    .create_internet_gateway()
                    .tag_specifications(tag_spec(ctx, ResourceType::InternetGateway, &name))
                    .send()
                    .await
                    .aws("ec2:CreateInternetGateway", || name.to_string())?;
                let gid = r
                    .internet_gateway()
                    .and_then(|g| g.internet_gateway_id())
                    .missing(|| "CreateInternetGateway returned no id")?
                    .to_string();
                attach_igw(ctx, &gid, &name).await?;
                ctx.igw_id = Some(gid);
            }
        }
        Some(gid) => {
            ctx.igw_id = Some(gid.clone());
            if drift.is_empty() {
                ctx.record("internet-gateway", &name, Some(gid), Change::Unchanged);
            } else {
                ctx.record(
                    "internet-gateway",
                    &name,
                    Some(gid),
                    Change::Update(std::mem::take(&mut drift)),
                );
                if ctx.apply() {
                    retag(ctx, gid, &name).await?;
                    let g = found.internet_gateways().first();
                    let attached_here = g.is_some_and(|g| {
                        g.attachments()
                            .iter()
                            .any(|a| a.vpc_id() == ctx.vpc_id.as_deref())
                    });
                    if !attached_here {
                        attach_igw(ctx, gid, &name).await?;
                    }
                }
            }
        }
    }
    Ok(())
}

async fn attach_igw(ctx: &Ctx, gid: &str, name: &str) -> Result<()> {
    let vpc = ctx
        .vpc_id
        .as_deref()
        .missing(|| "no VPC to attach the internet gateway to")?;
    ctx.ec2
        .attach_internet_gateway()
        .internet_gateway_id(gid)
        .vpc_id(vpc)
        .send()
        .await
        .aws("ec2:AttachInternetGateway", || {
            format!("{name} ({gid}) to {vpc}")
        })?;
    Ok(())
}

async fn subnet(ctx: &mut Ctx, name: &str, cidr: &str, public: bool) -> Result<Option<String>> {
    let Some(vpc) = ctx.vpc_id.clone() else {
        ctx.record("subnet", name, None, Change::Create);
        return Ok(None);
    };
    let mut filters = ours(ctx, name);
    filters.push(filter("vpc-id", &vpc));
    let found = ctx
        .ec2
        .describe_subnets()
        .set_filters(Some(filters))
        .send()
        .await
        .aws("ec2:DescribeSubnets", || format!("for {name}"))?;
    if let Some(s) = found.subnets().first() {
        let id = s.subnet_id().unwrap_or_default().to_string();
        if s.cidr_block() != Some(cidr)
            || s.availability_zone() != Some(ctx.cfg.availability_zone.as_str())
        {
            return Err(Error::Immutable {
                resource: format!("subnet {name} ({id})"),
                why: format!(
                    "is {} in {} but the config asks for {cidr} in {}: a subnet cannot be moved; destroy first",
                    s.cidr_block().unwrap_or("?"),
                    s.availability_zone().unwrap_or("?"),
                    ctx.cfg.availability_zone
                ),
            });
        }
        let mut drift = tag_drift(ctx, name, s.tags());
        let have_pub = s.map_public_ip_on_launch().unwrap_or(false);
        if have_pub != public {
            drift.push(format!("map_public_ip_on_launch: {have_pub} -> {public}"));
        }
        if drift.is_empty() {
            ctx.record("subnet", name, Some(&id), Change::Unchanged);
        } else {
            ctx.record("subnet", name, Some(&id), Change::Update(drift));
            if ctx.apply() {
                retag(ctx, &id, name).await?;
                set_map_public(ctx, &id, name, public).await?;
            }
        }
        return Ok(Some(id));
    }
    ctx.record("subnet", name, None, Change::Create);
    if !ctx.apply() {
        return Ok(None);
    }
    let r = ctx
        .ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block(cidr)
        .availability_zone(&ctx.cfg.availability_zone)
        .tag_specifications(tag_spec(ctx, ResourceType::Subnet, name))
        .send()
        .await
        .aws("ec2:CreateSubnet", || format!("{name} ({cidr})"))?;
    let id = r
        .subnet()
        .and_then(|s| s.subnet_id())
        .missing(|| "CreateSubnet returned no id")?
        .to_string();
    if public {
        set_map_public(ctx, &id, name, true).await?;
    }
    Ok(Some(id))
}

async fn set_map_public(ctx: &Ctx, id: &str, name: &str, v: bool) -> Result<()> {
    ctx.ec2
        .modify_subnet_attribute()
        .subnet_id(id)
        .map_public_ip_on_launch(AttributeBooleanValue::builder().value(v).build())
        .send()
        .await
        .aws("ec2:ModifySubnetAttribute", || format!("{name} ({id})"))?;
    Ok(())
}

async fn route_table(
    ctx: &mut Ctx,
    name: &str,
    subnet: Option<&str>,
    public: bool,
) -> Result<Option<String>> {
    let Some(vpc) = ctx.vpc_id.clone() else {
        ctx.record("route-table", name, None, Change::Create);
        return Ok(None);
    };
    let mut filters = ours(ctx, name);
    filters.push(filter("vpc-id", &vpc));
    let found = ctx
        .ec2
        .describe_route_tables()
        .set_filters(Some(filters))
        .send()
        .await
        .aws("ec2:DescribeRouteTables", || format!("for {name}"))?;
    let (id, mut drift, internet_route, associated) = match found.route_tables().first() {
        Some(rt) => {
            let id = rt.route_table_id().unwrap_or_default().to_string();
            let inet = rt
                .routes()
                .iter()
                .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
                .map(|r| r.gateway_id().unwrap_or("(other)").to_string());
            let assoc =
                subnet.is_some_and(|s| rt.associations().iter().any(|a| a.subnet_id() == Some(s)));
            (Some(id), tag_drift(ctx, name, rt.tags()), inet, assoc)
        }
        None => (None, Vec::new(), None, false),
    };
    let want_inet = if public { ctx.igw_id.clone() } else { None };
    if internet_route != want_inet {
        drift.push(format!(
            "route 0.0.0.0/0: {} -> {}",
            internet_route.as_deref().unwrap_or("(none)"),
            want_inet.as_deref().unwrap_or(if public {
                "the internet gateway"
            } else {
                "(none)"
            })
        ));
    }
    if !associated {
        drift.push("associated with its subnet: false -> true".into());
    }
    let id = match id {
        Some(id) => {
            if drift.is_empty() {
                ctx.record("route-table", name, Some(&id), Change::Unchanged);
                return Ok(Some(id));
            }
            ctx.record("route-table", name, Some(&id), Change::Update(drift));
            if !ctx.apply() {
                return Ok(Some(id));
            }
            retag(ctx, &id, name).await?;
            id
        }
        None => {
            ctx.record("route-table", name, None, Change::Create);
            if !ctx.apply() {
                return Ok(None);
            }
            let r = ctx
                .ec2
                .create_route_table()
                .vpc_id(&vpc)
                .tag_specifications(tag_spec(ctx, ResourceType::RouteTable, name))
                .send()
                .await
                .aws("ec2:CreateRouteTable", || name.to_string())?;
            r.route_table()
                .and_then(|t| t.route_table_id())
                .missing(|| "CreateRouteTable returned no id")?
                .to_string()
        }
    };
    // Apply mode from here on.
    if internet_route.is_some() && internet_route != want_inet {
        ctx.ec2
            .delete_route()
            .route_table_id(&id)
            .destination_cidr_block("0.0.0.0/0")
            .send()
            .await
            .aws("ec2:DeleteRoute", || format!("0.0.0.0/0 in {name} ({id})"))?;
    }
    if let Some(igw) = &want_inet
        && internet_route.as_ref() != Some(igw)
    {
        ctx.ec2
            .create_route()
            .route_table_id(&id)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(igw)
            .send()
            .await
            .aws("ec2:CreateRoute", || {
                format!("0.0.0.0/0 -> {igw} in {name} ({id})")
            })?;
    }
    if !associated && let Some(s) = subnet {
        ctx.ec2
            .associate_route_table()
            .route_table_id(&id)
            .subnet_id(s)
            .send()
            .await
            .aws("ec2:AssociateRouteTable", || {
                format!("{name} ({id}) with {s}")
            })?;
    }
    Ok(Some(id))
}

async fn endpoint(ctx: &mut Ctx) -> Result<()> {
    let name = ctx.cfg.names.s3_endpoint.clone();
    let service = format!("com.amazonaws.{}.s3", ctx.cfg.raw.region);
    let want_policy = s3_endpoint_policy(&ctx.policy_inputs()?);
    let Some(vpc) = ctx.vpc_id.clone() else {
        ctx.record("s3-endpoint", &name, None, Change::Create);
        return Ok(());
    };
    let mut filters = ours(ctx, &name);
    filters.push(filter("vpc-id", &vpc));
    filters.push(filter("service-name", &service));
    let found = ctx
        .ec2
        .describe_vpc_endpoints()
        .set_filters(Some(filters))
        .send()
        .await
        .aws("ec2:DescribeVpcEndpoints", || format!("for {name}"))?;
    let want_rts: Vec<String> = [ctx.public_rt_id.clone(), ctx.private_rt_id.clone()]
        .into_iter()
        .flatten()
        .collect();
    let live = found
        .vpc_endpoints()
        .iter()
        .find(|e| !matches!(e.state().map(|s| s.as_str()), Some("deleted" | "deleting")));
    match live {
        Some(e) => {
            let id = e.vpc_endpoint_id().unwrap_or_default().to_string();
            ctx.vpce_id = Some(id.clone());
            let mut drift = tag_drift(ctx, &name, e.tags());
            let have_rts: Vec<&str> = e.route_table_ids().iter().map(String::as_str).collect();
            let missing: Vec<String> = want_rts
                .iter()
                .filter(|r| !have_rts.contains(&r.as_str()))
                .cloned()
                .collect();
            if !missing.is_empty() {
                drift.push(format!("route tables: add {}", missing.join(",")));
            }
            let policy_ok = e
                .policy_document()
                .is_some_and(|p| super::same_policy(p, &want_policy));
            if !policy_ok {
                drift.push("policy: differs -> generated".into());
            }
            if drift.is_empty() {
                ctx.record("s3-endpoint", &name, Some(&id), Change::Unchanged);
            } else {
                ctx.record("s3-endpoint", &name, Some(&id), Change::Update(drift));
                if ctx.apply() {
                    retag(ctx, &id, &name).await?;
                    ctx.ec2
                        .modify_vpc_endpoint()
                        .vpc_endpoint_id(&id)
                        .set_add_route_table_ids((!missing.is_empty()).then_some(missing))
                        .policy_document(want_policy.to_string())
                        .send()
                        .await
                        .aws("ec2:ModifyVpcEndpoint", || format!("{name} ({id})"))?;
                }
            }
        }
        None => {
            ctx.record("s3-endpoint", &name, None, Change::Create);
            if ctx.apply() {
                let r = ctx
                    .ec2
                    .create_vpc_endpoint()
                    .vpc_id(&vpc)
                    .service_name(&service)
                    .vpc_endpoint_type(VpcEndpointType::Gateway)
                    .set_route_table_ids(Some(want_rts))
                    .policy_document(want_policy.to_string())
                    .tag_specifications(tag_spec(ctx, ResourceType::VpcEndpoint, &name))
                    .send()
                    .await
                    .aws("ec2:CreateVpcEndpoint", || format!("{name} ({service})"))?;
                let id = r
                    .vpc_endpoint()
                    .and_then(|e| e.vpc_endpoint_id())
                    .missing(|| "CreateVpcEndpoint returned no id")?;
                ctx.vpce_id = Some(id.to_string());
            }
        }
    }
    Ok(())
}

/// One NACL entry as ferry wants it (always `allow`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NaclRule {
    egress: bool,
    num: i32,
    cidr: String,
    /// `-1` (all) or `6` (TCP).
    protocol: &'static str,
    ports: Option<(i32, i32)>,
}

impl NaclRule {
    fn describe(&self) -> String {
        let what = match (self.protocol, self.ports) {
            ("-1", _) => "all".to_string(),
            (_, Some((a, b))) if a == b => format!("tcp {a}"),
            (_, Some((a, b))) => format!("tcp {a}-{b}"),
            (p, None) => format!("protocol {p}"),
        };
        format!(
            "{} rule {}: allow {what} {} {}",
            if self.egress { "egress" } else { "ingress" },
            self.num,
            if self.egress { "to" } else { "from" },
            self.cidr
        )
    }
}

/// First rule number of the S3 prefix-list entries; the jump-box range uses 100.
const S3_RULES_FROM: i32 = 200;
/// NACLs hold 20 rules per direction by default; one is the jump-box range.
const MAX_S3_CIDRS: usize = 18;

/// The CIDRs of the AWS-managed S3 prefix list of the region (`com.amazonaws.<region>.s3`),
/// sorted. NACL entries take CIDRs, not prefix-list ids, so they are resolved here.
async fn s3_prefix_list_cidrs(ctx: &Ctx) -> Result<Vec<String>> {
    let name = format!("com.amazonaws.{}.s3", ctx.cfg.raw.region);
    let pls = ctx
        .ec2
        .describe_managed_prefix_lists()
        .filters(filter("prefix-list-name", &name))
        .send()
        .await
        .aws("ec2:DescribeManagedPrefixLists", || name.to_string())?;
    let id = pls
        .prefix_lists()
        .iter()
        .find(|p| p.prefix_list_name() == Some(name.as_str()))
        .and_then(|p| p.prefix_list_id())
        .ok_or_else(|| Error::NotFound {
            what: format!("the AWS-managed prefix list {name} was not found"),
        })?
        .to_string();
    let mut cidrs = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let r = ctx
            .ec2
            .get_managed_prefix_list_entries()
            .prefix_list_id(&id)
            .set_next_token(token.take())
            .send()
            .await
            .aws("ec2:GetManagedPrefixListEntries", || {
                format!("{name} ({id})")
            })?;
        cidrs.extend(
            r.entries()
                .iter()
                .filter_map(|e| e.cidr().map(str::to_string)),
        );
        token = r.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    cidrs.sort();
    cidrs.dedup();
    if cidrs.is_empty() {
        return Err(Error::NotFound {
            what: format!("the prefix list {name} ({id}) has no entries"),
        });
    }
    if cidrs.len() > MAX_S3_CIDRS {
        return Err(Error::LimitExceeded {
            what: format!(
                "the prefix list {name} ({id}) has {} CIDRs; the private NACL holds at most {MAX_S3_CIDRS}",
                cidrs.len()
            ),
        });
    }
    Ok(cidrs)
}

/// The private subnet's NACL: deny by default (AWS's implicit `*` rule), allowing only traffic
/// to and from the jump box's (public) subnet, and HTTPS to S3 through the gateway endpoint (the
/// region's S3 prefix list, resolved to CIDRs: egress TCP 443, ingress the return traffic on
/// 1024-65535, as NACLs are stateless), as in the seed.
async fn nacl(ctx: &mut Ctx) -> Result<()> {
    let name = ctx.cfg.names.private_nacl.clone();
    let Some(vpc) = ctx.vpc_id.clone() else {
        ctx.record("network-acl", &name, None, Change::Create);
        return Ok(());
    };
    let jump_range = ctx.cfg.public_subnet_cidr.to_string();
    let mut filters = ours(ctx, &name);
    filters.push(filter("vpc-id", &vpc));
    let found = ctx
        .ec2
        .describe_network_acls()
        .set_filters(Some(filters))
        .send()
        .await
        .aws("ec2:DescribeNetworkAcls", || format!("for {name}"))?;
    let mut want_rules = vec![
        NaclRule {
            egress: false,
            num: 100,
            cidr: jump_range.clone(),
            protocol: "-1",
            ports: None,
        },
        NaclRule {
            egress: true,
            num: 100,
            cidr: jump_range.clone(),
            protocol: "-1",
            ports: None,
        },
    ];
    for (i, cidr) in s3_prefix_list_cidrs(ctx).await?.into_iter().enumerate() {
        let num = S3_RULES_FROM + i as i32;
        want_rules.push(NaclRule {
            egress: true,
            num,
            cidr: cidr.clone(),
            protocol: "6",
            ports: Some((443, 443)),
        });
        want_rules.push(NaclRule {
            egress: false,
            num,
            cidr,
            protocol: "6",
            ports: Some((1024, 65535)),
        });
    }
    let (id, mut drift, missing_rules, extra_rules) = match found.network_acls().first() {
        Some(n) => {
            let id = n.network_acl_id().unwrap_or_default().to_string();
            // (rule, is an allow) for every entry but the default deny.
            let have: Vec<(NaclRule, bool)> = n
                .entries()
                .iter()
                .filter(|e| e.rule_number().unwrap_or(32767) < 32767)
                .map(|e| {
                    let protocol = match e.protocol() {
                        Some("-1") => "-1",
                        Some("6") => "6",
                        _ => "other",
                    };
                    let ports = if protocol == "6" {
                        e.port_range()
                            .map(|p| (p.from().unwrap_or(0), p.to().unwrap_or(0)))
                    } else {
                        None
                    };
                    (
                        NaclRule {
                            egress: e.egress().unwrap_or(false),
                            num: e.rule_number().unwrap_or(0),
                            cidr: e.cidr_block().unwrap_or_default().to_string(),
                            protocol,
                            ports,
                        },
                        e.rule_action() == Some(&RuleAction::Allow),
                    )
                })
                .collect();
            let missing: Vec<NaclRule> = want_rules
                .iter()
                .filter(|w| !have.iter().any(|(h, allow)| *allow && h == *w))
                .cloned()
                .collect();
            let extra: Vec<(bool, i32)> = have
                .iter()
                .filter(|(h, allow)| !(*allow && want_rules.contains(h)))
                .map(|(h, _)| (h.egress, h.num))
                .collect();
            (Some(id), tag_drift(ctx, &name, n.tags()), missing, extra)
        }
        None => (None, Vec::new(), want_rules.clone(), Vec::new()),
    };
    for r in &missing_rules {
        if id.is_some() {
            drift.push(format!("{}: missing -> present", r.describe()));
        }
    }
    for (egress, num) in &extra_rules {
        drift.push(format!(
            "{} rule {num}: present -> removed",
            if *egress { "egress" } else { "ingress" }
        ));
    }
    // Association with the private subnet.
    let subnet = ctx.private_subnet_id.clone();
    let mut assoc_to_replace = None;
    if let Some(s) = &subnet {
        let cur = ctx
            .ec2
            .describe_network_acls()
            .filters(filter("association.subnet-id", s))
            .send()
            .await
            .aws("ec2:DescribeNetworkAcls", || {
                format!("for the private subnet {s}")
            })?;
        if let Some(n) = cur.network_acls().first()
            && n.network_acl_id() != id.as_deref()
        {
            assoc_to_replace = n
                .associations()
                .iter()
                .find(|a| a.subnet_id() == Some(s.as_str()))
                .and_then(|a| a.network_acl_association_id())
                .map(str::to_string);
            if id.is_some() {
                drift.push("associated with the private subnet: false -> true".into());
            }
        }
    }
    let id = match id {
        Some(id) => {
            if drift.is_empty() {
                ctx.record("network-acl", &name, Some(&id), Change::Unchanged);
                return Ok(());
            }
            ctx.record("network-acl", &name, Some(&id), Change::Update(drift));
            if !ctx.apply() {
                return Ok(());
            }
            retag(ctx, &id, &name).await?;
            id
        }
        None => {
            ctx.record("network-acl", &name, None, Change::Create);
            if !ctx.apply() {
                return Ok(());
            }
            let r = ctx
                .ec2
                .create_network_acl()
                .vpc_id(&vpc)
                .tag_specifications(tag_spec(ctx, ResourceType::NetworkAcl, &name))
                .send()
                .await
                .aws("ec2:CreateNetworkAcl", || name.to_string())?;
            r.network_acl()
                .and_then(|n| n.network_acl_id())
                .missing(|| "CreateNetworkAcl returned no id")?
                .to_string()
        }
    };
    for (egress, num) in &extra_rules {
        ctx.ec2
            .delete_network_acl_entry()
            .network_acl_id(&id)
            .egress(*egress)
            .rule_number(*num)
            .send()
            .await
            .aws("ec2:DeleteNetworkAclEntry", || {
                format!("{num} in {name} ({id})")
            })?;
    }
    for r in &missing_rules {
        // A wrong entry with the same number is deleted above (it is "extra").
        let mut req = ctx
            .ec2
            .create_network_acl_entry()
            .network_acl_id(&id)
            .egress(r.egress)
            .rule_number(r.num)
            .protocol(r.protocol)
            .rule_action(RuleAction::Allow)
            .cidr_block(&r.cidr);
        if let Some((from, to)) = r.ports {
            req = req.port_range(PortRange::builder().from(from).to(to).build());
        }
        req.send().await.aws("ec2:CreateNetworkAclEntry", || {
            format!("{} in {name} ({id})", r.describe())
        })?;
    }
    if let Some(assoc) = assoc_to_replace {
        ctx.ec2
            .replace_network_acl_association()
            .association_id(&assoc)
            .network_acl_id(&id)
            .send()
            .await
            .aws("ec2:ReplaceNetworkAclAssociation", || {
                format!("{name} ({id})")
            })?;
    }
    Ok(())
}

pub(super) async fn destroy(ctx: &mut Ctx, out: &mut dyn std::io::Write) -> Result<()> {
    let Some(vpc) = ctx.vpc_id.clone() else {
        return Ok(());
    };
    // Session resources left in the VPC block the delete; refuse with a clear message.
    let inst = ctx
        .ec2
        .describe_instances()
        .filters(filter("vpc-id", &vpc))
        .send()
        .await
        .aws("ec2:DescribeInstances", || format!("in {vpc}"))?;
    let live: Vec<String> = inst
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| {
            !matches!(
                i.state().and_then(|s| s.name()).map(|n| n.as_str()),
                Some("terminated")
            )
        })
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    if !live.is_empty() {
        return Err(Error::NotReady {
            resource: format!("instances still run in {vpc}"),
            why: format!(
                "({}): let ferry-clean finish (or terminate them) before destroy",
                live.join(", ")
            ),
        });
    }
    if let Some(id) = ctx.vpce_id.clone() {
        ctx.ec2
            .delete_vpc_endpoints()
            .vpc_endpoint_ids(&id)
            .send()
            .await
            .aws("ec2:DeleteVpcEndpoints", || id.to_string())?;
        writeln!(out, "- s3-endpoint {id}")?;
    }
    for (rt, name) in [
        (
            ctx.public_rt_id.clone(),
            ctx.cfg.names.public_route_table.clone(),
        ),
        (
            ctx.private_rt_id.clone(),
            ctx.cfg.names.private_route_table.clone(),
        ),
    ] {
        let Some(rt) = rt else { continue };
        let d = ctx
            .ec2
            .describe_route_tables()
            .route_table_ids(&rt)
            .send()
            .await
            .aws("ec2:DescribeRouteTables", || format!("{name} ({rt})"))?;
        for a in d.route_tables().iter().flat_map(|t| t.associations()) {
            if let Some(aid) = a.route_table_association_id()
                && !a.main().unwrap_or(false)
            {
                ctx.ec2
                    .disassociate_route_table()
                    .association_id(aid)
                    .send()
                    .await
                    .aws("ec2:DisassociateRouteTable", || format!("{name} ({aid})"))?;
            }
        }
        ctx.ec2
            .delete_route_table()
            .route_table_id(&rt)
            .send()
            .await
            .aws("ec2:DeleteRouteTable", || format!("{name} ({rt})"))?;
        writeln!(out, "- route-table {name} {rt}")?;
    }
    // Hand the private subnet back to the VPC's default NACL (reverse of the association).
    let nacl_name = ctx.cfg.names.private_nacl.clone();
    let mut f = ours(ctx, &nacl_name);
    f.push(filter("vpc-id", &vpc));
    let ours_acl = ctx
        .ec2
        .describe_network_acls()
        .set_filters(Some(f.clone()))
        .send()
        .await
        .aws("ec2:DescribeNetworkAcls", || format!("for {nacl_name}"))?;
    let default_acl = ctx
        .ec2
        .describe_network_acls()
        .filters(filter("vpc-id", &vpc))
        .filters(filter("default", "true"))
        .send()
        .await
        .aws("ec2:DescribeNetworkAcls", || format!("default of {vpc}"))?;
    if let Some(def) = default_acl
        .network_acls()
        .first()
        .and_then(|a| a.network_acl_id())
    {
        for a in ours_acl
            .network_acls()
            .iter()
            .flat_map(|n| n.associations())
        {
            if let Some(aid) = a.network_acl_association_id() {
                ctx.ec2
                    .replace_network_acl_association()
                    .association_id(aid)
                    .network_acl_id(def)
                    .send()
                    .await
                    .aws("ec2:ReplaceNetworkAclAssociation", || {
                        format!("{aid} back to {def}")
                    })?;
            }
        }
    }
    for (sid, name) in [
        (
            ctx.public_subnet_id.clone(),
            ctx.cfg.names.public_subnet.clone(),
        ),
        (
            ctx.private_subnet_id.clone(),
            ctx.cfg.names.private_subnet.clone(),
        ),
    ] {
        let Some(sid) = sid else { continue };
        ctx.ec2
            .delete_subnet()
            .subnet_id(&sid)
            .send()
            .await
            .aws("ec2:DeleteSubnet", || format!("{name} ({sid})"))?;
        writeln!(out, "- subnet {name} {sid}")?;
    }
    let n = ctx
        .ec2
        .describe_network_acls()
        .set_filters(Some(f))
        .send()
        .await
        .aws("ec2:DescribeNetworkAcls", || format!("for {nacl_name}"))?;
    for acl in n.network_acls() {
        if let Some(id) = acl.network_acl_id() {
            ctx.ec2
                .delete_network_acl()
                .network_acl_id(id)
                .send()
                .await
                .aws("ec2:DeleteNetworkAcl", || format!("{nacl_name} ({id})"))?;
            writeln!(out, "- network-acl {nacl_name} {id}")?;
        }
    }
    if let Some(igw) = ctx.igw_id.clone() {
        let _ = ctx
            .ec2
            .detach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(&vpc)
            .send()
            .await;
        ctx.ec2
            .delete_internet_gateway()
            .internet_gateway_id(&igw)
            .send()
            .await
            .aws("ec2:DeleteInternetGateway", || igw.to_string())?;
        writeln!(out, "- internet-gateway {igw}")?;
    }
    ctx.ec2
        .delete_vpc()
        .vpc_id(&vpc)
        .send()
        .await
        .aws("ec2:DeleteVpc", || vpc.to_string())?;
    writeln!(out, "- vpc {vpc}")?;
    Ok(())
}
