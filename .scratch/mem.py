import resource, sys, time, os, gc
import boto3, botocore.session, botocore.loaders
mode = sys.argv[1]; n = int(sys.argv[2])
def rss(): 
    with open("/proc/self/status") as f:
        for l in f:
            if l.startswith("VmRSS"): return int(l.split()[1])/1024
t0=time.process_time()
base = rss()
loader = botocore.loaders.create_loader()
keep=[]
for i in range(n):
    if mode == "shared":
        bs = botocore.session.Session(); bs.register_component("data_loader", loader)
        s = boto3.Session(botocore_session=bs, aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1")
    else:
        s = boto3.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1")
    t1=time.process_time()
    c = s.client("ec2", endpoint_url="http://127.0.0.1:1")
    t2=time.process_time()
    keep.append((s,c))
    if i in (0,1,n-1): print(i, f"rss {rss():.1f} cpu client {1000*(t2-t1):.1f}ms")
print(mode, n, f"rss {rss():.1f} base {base:.1f} cpu {time.process_time()-t0:.2f}s", len(loader.search_paths))
