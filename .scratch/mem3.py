import sys, time, tracemalloc, threading
import boto3, botocore.client
from awsops.loader import new_botocore_session
if sys.argv[1] == "cache":
    _cache = {}
    Orig = botocore.client.ClientCreator
    class C(Orig):
        def _create_client_class(self, service_name, service_model):
            key = (service_name, service_model.api_version)
            cls = _cache.get(key)
            if cls is None:
                cls = _cache[key] = super()._create_client_class(service_name, service_model)
            return cls
    botocore.client.ClientCreator = C
def mk():
    return boto3.Session(botocore_session=new_botocore_session(), aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1")
s=mk(); s.client("ec2", endpoint_url="http://127.0.0.1:1")
N=20
ss=[mk() for _ in range(N)]
t=time.process_time(); cs=[x.client("ec2", endpoint_url="http://127.0.0.1:1") for x in ss]; print("ec2 client cpu ms", 1000*(time.process_time()-t)/N)
t=time.process_time(); cs=[x.client("autoscaling", endpoint_url="http://127.0.0.1:1") for x in ss]; print("asg client cpu ms", 1000*(time.process_time()-t)/N)
t=time.process_time(); cs=[x.client("sts", endpoint_url="http://127.0.0.1:1") for x in ss]; print("sts client cpu ms", 1000*(time.process_time()-t)/N)
tracemalloc.start()
a=tracemalloc.take_snapshot()
cs3=[x.client("ec2", endpoint_url="http://127.0.0.1:1") for x in ss]
c=tracemalloc.take_snapshot()
print("client KB", sum(st.size_diff for st in c.compare_to(a,'filename'))/N/1024)
