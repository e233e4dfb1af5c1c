import sys, time
sys.path.insert(0, "/work/wt-org/benchmarks")
from orgfleet import sandbox, seed, parse_org, account_ids, role_arn, REGIONS
with sandbox("latency=1ms") as box:
    from awsops.session import SessionFactory, AssumeRoleSpec
    from awsops.config import ClientSettings
    from awsops.clients import make_client
    st = ClientSettings(endpoint_url=box.endpoint)
    f = SessionFactory(region="us-east-1", settings=st)
    s = f.assume(AssumeRoleSpec(role_arn("100000000001")))
    ec2 = make_client(s, "ec2", "us-east-1", st)
    iid = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.describe_instance_attribute(InstanceId=iid, Attribute="disableApiTermination")
    N=200; t=time.process_time()
    for _ in range(N): ec2.describe_instance_attribute(InstanceId=iid, Attribute="disableApiTermination")
    print("attr call ms", 1000*(time.process_time()-t)/N)
    asg = make_client(s, "autoscaling", "us-east-1", st); asg.describe_auto_scaling_instances(InstanceIds=[iid])
    t=time.process_time()
    for _ in range(N): asg.describe_auto_scaling_instances(InstanceIds=[iid])
    print("asg call ms", 1000*(time.process_time()-t)/N)
    for svc in ("ec2", "autoscaling", "sts"):
        t=time.process_time()
        for _ in range(50): make_client(s, svc, "eu-west-1", st).close()
        print(svc, "client ms", 1000*(time.process_time()-t)/50)
    import cProfile, pstats
    pr = cProfile.Profile(); pr.enable()
    for _ in range(N): ec2.describe_instance_attribute(InstanceId=iid, Attribute="disableApiTermination")
    for _ in range(50): make_client(s, "ec2", "eu-west-1", st).close()
    pr.disable(); pstats.Stats(pr).sort_stats("tottime").print_stats(25)
