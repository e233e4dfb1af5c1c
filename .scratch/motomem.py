import os, sys, tempfile, time
home = tempfile.mkdtemp(prefix="awsops-scratch-", dir="/work/wt-org/.scratch")
os.environ.update(AWSOPS_HOME=home, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_CONFIG_FILE=home+"/c", AWS_SHARED_CREDENTIALS_FILE=home+"/cr", AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION="us-east-1")
from awsops.sandbox import manager
from awsops.session import SessionFactory, AssumeRoleSpec
from awsops.clients import make_client
from awsops.config import ClientSettings
st = manager.up()
def rss(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])//1024
try:
    s = ClientSettings(endpoint_url=st.endpoint, max_attempts=3)
    f = SessionFactory(region="us-east-1", settings=s, static_credentials=("testing","testing"))
    print("fresh", rss(st.pid))
    t=time.time()
    for a in range(5):
        acct = f"1000000000{a:02d}"
        for r in ["us-east-1","eu-west-1","us-west-2"]:
            ec2 = make_client(f.assume(AssumeRoleSpec(f"arn:aws:iam::{acct}:role/ops")), "ec2", r, s)
            ids=[i["InstanceId"] for i in ec2.run_instances(ImageId="ami-12c6146b", MinCount=3, MaxCount=3)["Instances"]]
        print(a, rss(st.pid), f"{time.time()-t:.1f}s")
finally:
    manager.down()
