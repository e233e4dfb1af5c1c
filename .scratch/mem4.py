import time, tracemalloc
from awsops.session import SessionFactory, AssumeRoleSpec
from awsops.clients import make_client
from awsops.config import ClientSettings
from awsops.loader import shared_loader
st = ClientSettings(endpoint_url="http://127.0.0.1:1")
f = SessionFactory(region="us-east-1", settings=st, static_credentials=("a","b"))
make_client(f.session(), "ec2", "us-east-1", st)
N=50
t=time.process_time()
ss=[f.session() for _ in range(N)]
print("session ms", 1000*(time.process_time()-t)/N)
t=time.process_time()
cs=[make_client(s, "ec2", "us-east-1", st) for s in ss]
print("ec2 client ms", 1000*(time.process_time()-t)/N)
print(shared_loader().classes_built, sum(shared_loader().files_loaded.values()), max(shared_loader().files_loaded.values()))
