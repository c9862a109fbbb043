//! The kit's EC2/IAM eventual-consistency patch (`py/moto/unkind_ec2.py`) does what it says,
//! through boto3 against the patched moto: a new security group and a new instance are NotFound
//! (by id, and left out of filtered lists; Authorize*/TerminateInstances change nothing) and
//! then found; a terminated instance is shutting-down for a while, and its group cannot be
//! deleted (DependencyViolation) until it is terminated; a new instance profile is refused by
//! RunInstances with AWS's text and then accepted; a missing profile gets the same text; the
//! knobs at 0 turn it all off.

#![allow(clippy::unwrap_used)] // a test fails by panicking; unwrap says where

use ferry_testkit::{Moto, MotoOptions};
use serde_json::Value;

/// Prints one JSON object of observations. Every wait is bounded (60 polls of 0.25 s).
const PROBE: &str = r#"
import boto3, botocore, json, time
ec2 = boto3.client('ec2'); iam = boto3.client('iam')
out = {}
def code(f):
    try:
        f()
        return 'ok'
    except botocore.exceptions.ClientError as e:
        return e.response['Error']['Code'] + ': ' + e.response['Error']['Message']
def until(p):
    for n in range(60):
        if p():
            return n
        time.sleep(0.25)
    return None
def until_found(f):
    return until(lambda: code(f) == 'ok')

vpc = ec2.create_vpc(CidrBlock='10.0.0.0/16')['Vpc']['VpcId']
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock='10.0.1.0/24')['Subnet']['SubnetId']
sg = ec2.create_security_group(GroupName='g', Description='d', VpcId=vpc,
    TagSpecifications=[{'ResourceType': 'security-group', 'Tags': [{'Key': 'k', 'Value': 'sg'}]}])['GroupId']
out['sg_describe'] = code(lambda: ec2.describe_security_groups(GroupIds=[sg]))
out['sg_authorize'] = code(lambda: ec2.authorize_security_group_ingress(GroupId=sg,
    IpPermissions=[{'IpProtocol': 'tcp', 'FromPort': 22, 'ToPort': 22, 'IpRanges': [{'CidrIp': '192.0.2.0/24'}]}]))
out['sg_listed'] = [g['GroupId'] for g in ec2.describe_security_groups(
    Filters=[{'Name': 'tag:k', 'Values': ['sg']}])['SecurityGroups']]
out['sg_polls'] = until_found(lambda: ec2.describe_security_groups(GroupIds=[sg]))
out['sg_listed_later'] = [g['GroupId'] for g in ec2.describe_security_groups(
    Filters=[{'Name': 'tag:k', 'Values': ['sg']}])['SecurityGroups']]
out['sg_rules_after_refused_authorize'] = len(ec2.describe_security_groups(GroupIds=[sg])['SecurityGroups'][0]['IpPermissions'])
out['sg'] = sg

ami = sorted(i['ImageId'] for i in ec2.describe_images(Owners=['amazon'])['Images'])[0]
iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, SubnetId=subnet, SecurityGroupIds=[sg],
    TagSpecifications=[{'ResourceType': 'instance', 'Tags': [{'Key': 'k', 'Value': 'i'}]}])['Instances'][0]['InstanceId']
out['i_describe'] = code(lambda: ec2.describe_instances(InstanceIds=[iid]))
out['i_terminate'] = code(lambda: ec2.terminate_instances(InstanceIds=[iid]))
out['i_listed'] = [i['InstanceId'] for r in ec2.describe_instances(Filters=[{'Name': 'tag:k', 'Values': ['i']}])['Reservations'] for i in r['Instances']]
out['i_polls'] = until_found(lambda: ec2.describe_instances(InstanceIds=[iid]))
out['i_state_after_refused_terminate'] = ec2.describe_instances(InstanceIds=[iid])['Reservations'][0]['Instances'][0]['State']['Name']
out['i_listed_later'] = [i['InstanceId'] for r in ec2.describe_instances(Filters=[{'Name': 'tag:k', 'Values': ['i']}])['Reservations'] for i in r['Instances']]
out['i'] = iid
# TerminateInstances is idempotent on AWS: a second (and third) call succeeds. The instance is
# shutting-down for a while, and its group cannot be deleted until it is terminated.
state = lambda: ec2.describe_instances(InstanceIds=[iid])['Reservations'][0]['Instances'][0]['State']['Name']
out['i_terminate_state'] = ec2.terminate_instances(InstanceIds=[iid])['TerminatingInstances'][0]['CurrentState']['Name']
out['i_terminate_again'] = [code(lambda: ec2.terminate_instances(InstanceIds=[iid])) for _ in range(2)]
out['i_state_now'] = state()
out['sg_delete_in_use'] = code(lambda: ec2.delete_security_group(GroupId=sg))
out['i_terminated_polls'] = until(lambda: state() == 'terminated')
out['sg_delete_later'] = code(lambda: ec2.delete_security_group(GroupId=sg))

trust = {'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Principal': {'Service': 'ec2.amazonaws.com'}, 'Action': 'sts:AssumeRole'}]}
iam.create_role(RoleName='r', AssumeRolePolicyDocument=json.dumps(trust))
iam.create_instance_profile(InstanceProfileName='p')
iam.add_role_to_instance_profile(InstanceProfileName='p', RoleName='r')
run = lambda name: (lambda: ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, SubnetId=subnet, IamInstanceProfile={'Name': name}))
out['profile_new'] = code(run('p'))
out['profile_polls'] = until_found(run('p'))
out['profile_missing'] = code(run('no-such-profile'))
print(json.dumps(out))
"#;

fn probe(env: &[(&str, &str)]) -> Value {
    let moto = Moto::start_with(MotoOptions::with_env(env)).expect("moto");
    let out = moto.python(PROBE, &[], &[]).expect("probe");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{}", moto.log()))
}

#[test]
fn new_ec2_resources_and_instance_profiles_appear_after_a_while() {
    // Windows long enough that the first calls surely fall inside them on a loaded machine.
    let v = probe(&[
        ("FERRY_UNKIND_EC2_NOTFOUND_SECONDS", "5"),
        ("FERRY_UNKIND_IAM_PROFILE_SECONDS", "5"),
        ("FERRY_UNKIND_EC2_SHUTDOWN_SECONDS", "3"),
    ]);
    let (sg, iid) = (v["sg"].as_str().unwrap(), v["i"].as_str().unwrap());
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();

    assert_eq!(
        s("sg_describe"),
        format!("InvalidGroup.NotFound: The security group '{sg}' does not exist"),
        "{v}"
    );
    assert!(
        s("sg_authorize").starts_with("InvalidGroup.NotFound"),
        "{v}"
    );
    assert_eq!(v["sg_listed"], serde_json::json!([]), "{v}");
    assert!(v["sg_polls"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(v["sg_listed_later"], serde_json::json!([sg]), "{v}");
    assert_eq!(v["sg_rules_after_refused_authorize"], 0, "{v}");

    assert_eq!(
        s("i_describe"),
        format!("InvalidInstanceID.NotFound: The instance ID '{iid}' does not exist"),
        "{v}"
    );
    assert!(
        s("i_terminate").starts_with("InvalidInstanceID.NotFound"),
        "{v}"
    );
    assert_eq!(v["i_listed"], serde_json::json!([]), "{v}");
    assert!(v["i_polls"].as_u64().is_some_and(|n| n > 0), "{v}");
    // The refused TerminateInstances did not terminate it (AWS: NotFound from
    // TerminateInstances does not mean the instance was or will be terminated).
    assert_eq!(s("i_state_after_refused_terminate"), "running", "{v}");
    assert_eq!(v["i_listed_later"], serde_json::json!([iid]), "{v}");
    // A repeated TerminateInstances succeeds, as AWS documents (plain moto fails deleting the
    // network interface a second time).
    assert_eq!(
        v["i_terminate_again"],
        serde_json::json!(["ok", "ok"]),
        "{v}"
    );
    // Termination takes a while, and the group stays in use until it is over.
    assert_eq!(s("i_terminate_state"), "shutting-down", "{v}");
    assert_eq!(s("i_state_now"), "shutting-down", "{v}");
    assert_eq!(
        s("sg_delete_in_use"),
        format!("DependencyViolation: resource {sg} has a dependent object"),
        "{v}"
    );
    assert!(
        v["i_terminated_polls"].as_u64().is_some_and(|n| n > 0),
        "{v}"
    );
    assert_eq!(s("sg_delete_later"), "ok", "{v}");

    assert_eq!(
        s("profile_new"),
        "InvalidParameterValue: Value (p) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
        "{v}"
    );
    assert!(v["profile_polls"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(
        s("profile_missing"),
        "InvalidParameterValue: Value (no-such-profile) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
        "{v}"
    );
}

#[test]
fn the_knobs_at_zero_turn_it_off() {
    let v = probe(&[
        ("FERRY_UNKIND_EC2_NOTFOUND_SECONDS", "0"),
        ("FERRY_UNKIND_IAM_PROFILE_SECONDS", "0"),
        ("FERRY_UNKIND_EC2_SHUTDOWN_SECONDS", "0"),
    ]);
    for k in ["sg_describe", "sg_authorize", "i_describe", "profile_new"] {
        assert_eq!(v[k], "ok", "{k}: {v}");
    }
    for k in ["sg_polls", "i_polls", "profile_polls"] {
        assert_eq!(v[k], 0, "{k}: {v}");
    }
    // i_terminate succeeded, so the instance is no longer running.
    assert_eq!(v["i_terminate"], "ok", "{v}");
    assert_ne!(v["i_state_after_refused_terminate"], "running", "{v}");
    // Terminated at once; its group deleted at once.
    assert_eq!(v["i_state_now"], "terminated", "{v}");
    assert_eq!(v["i_terminated_polls"], 0, "{v}");
    assert_eq!(v["sg_delete_in_use"], "ok", "{v}");
    // A missing profile still gets AWS's answer (not IAM's NoSuchEntity from the EC2 endpoint).
    assert!(
        v["profile_missing"]
            .as_str()
            .unwrap()
            .starts_with("InvalidParameterValue: Value (no-such-profile)"),
        "{v}"
    );
}
