import sys, time, tracemalloc, gc
import boto3, botocore.session, botocore.loaders
loader = botocore.loaders.create_loader()
def mk():
    bs = botocore.session.Session(); bs.register_component("data_loader", loader)
    return boto3.Session(botocore_session=bs, aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1")
s=mk(); s.client("ec2", endpoint_url="http://127.0.0.1:1"); s.client("autoscaling", endpoint_url="http://127.0.0.1:1"); s.client("sts", endpoint_url="http://127.0.0.1:1")
N=20
t=time.process_time(); ss=[mk() for _ in range(N)]; print("session cpu ms", 1000*(time.process_time()-t)/N)
t=time.process_time(); cs=[x.client("ec2", endpoint_url="http://127.0.0.1:1") for x in ss]; print("ec2 client cpu ms", 1000*(time.process_time()-t)/N)
t=time.process_time(); cs2=[s.client("ec2", endpoint_url="http://127.0.0.1:1") for x in ss]; print("ec2 client same session cpu ms", 1000*(time.process_time()-t)/N)
tracemalloc.start(25)
a=tracemalloc.take_snapshot()
ss2=[mk() for _ in range(N)]
b=tracemalloc.take_snapshot()
cs3=[x.client("ec2", endpoint_url="http://127.0.0.1:1") for x in ss2]
c=tracemalloc.take_snapshot()
cs4=[s.client("ec2", endpoint_url="http://127.0.0.1:1") for x in ss2]
d=tracemalloc.take_snapshot()
def tot(x,y): return sum(st.size_diff for st in y.compare_to(x,'filename'))/N/1024
print("session KB", tot(a,b), "client KB", tot(b,c), "client same-session KB", tot(c,d))
for st in d.compare_to(c,'lineno')[:12]: print(st)
