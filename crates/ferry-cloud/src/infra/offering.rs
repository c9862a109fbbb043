//! The jump box's instance type must be offered in the availability zone of the public subnet,
//! where ferry-build launches it: not every type is offered in every zone (t3.micro, the
//! default, is not offered in us-east-1e, for one), and RunInstances in such a zone fails on
//! every backup. Plan warns and names the zones that offer it; apply refuses before any change.
//!
//! Checked with `ec2:DescribeInstanceTypeOfferings`, location type `availability-zone`,
//! filtered by instance type: the answer lists each zone of the region that offers it.
//! <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstanceTypeOfferings.html>
//! <https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-regions.html>

use crate::error::{AwsContext, Error, Result};
use aws_sdk_ec2::types::{Filter, LocationType};

use super::Ctx;

/// Bound on result pages (with the type filter there is one entry per zone: one page).
const MAX_PAGES: usize = 20;

/// The zones of the configured region that offer `instance_type`, sorted.
pub(crate) async fn zones_offering(ctx: &Ctx, instance_type: &str) -> Result<Vec<String>> {
    let mut zones = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let r = ctx
            .ec2
            .describe_instance_type_offerings()
            .location_type(LocationType::AvailabilityZone)
            .filters(
                Filter::builder()
                    .name("instance-type")
                    .values(instance_type)
                    .build(),
            )
            .set_next_token(token.take())
            .send()
            .await
            .aws("ec2:DescribeInstanceTypeOfferings", || {
                format!("for {instance_type} in {}", ctx.cfg.raw.region)
            })?;
        zones.extend(
            r.instance_type_offerings()
                .iter()
                .filter(|o| o.instance_type().map(|t| t.as_str()) == Some(instance_type))
                .filter_map(|o| o.location().map(str::to_string)),
        );
        match r.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    zones.sort();
    zones.dedup();
    Ok(zones)
}

/// Plan: a warning when the configured type is not offered in the configured zone. Apply: an
/// error, before anything is created or changed.
pub(super) async fn check(ctx: &mut Ctx) -> Result<()> {
    let t = ctx.cfg.raw.jumpbox.instance_type.clone();
    let az = ctx.cfg.availability_zone.clone();
    let zones = zones_offering(ctx, &t).await?;
    if zones.contains(&az) {
        return Ok(());
    }
    let problem = if zones.is_empty() {
        format!(
            "jumpbox.instance_type {t} is not offered in any availability zone of {}: choose \
             another type (ferry-build could never launch the jump box)",
            ctx.cfg.raw.region
        )
    } else {
        format!(
            "jumpbox.instance_type {t} is not offered in {az} (network.availability_zone), so \
             ferry-build could never launch the jump box there; it is offered in {}: set \
             network.availability_zone to one of them, or choose another type",
            zones.join(", ")
        )
    };
    if ctx.apply() {
        return Err(Error::NotOffered {
            instance_type: t,
            zone: az,
            problem,
        });
    }
    ctx.warnings.push(problem);
    Ok(())
}
