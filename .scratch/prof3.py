import sys, time
sys.path.insert(0, "/work/wt-org/benchmarks")
from orgfleet import sandbox, seed, parse_org, account_ids, role_arn, REGIONS
org = parse_org(sys.argv[1])
with sandbox("latency=1ms") as box:
    seed(box, org)
    from awsops.session import SessionFactory
    from awsops.config import ClientSettings, Target
    from awsops.decommission.planner import build_plan
    from awsops.decommission.model import PlanCriteria
    crit = PlanCriteria(older_than_days=30, protect_tags=("awsops:protect","DoNotDelete"))
    targets = [Target(region=r, account_id=a, role_arn=role_arn(a)) for a in account_ids(org.accounts) for r in REGIONS[:org.regions]]
    box.reset_proxy()
    f = SessionFactory(region="us-east-1", settings=ClientSettings(endpoint_url=box.endpoint))
    build_plan(f, targets, crit)
    print(box.proxy_stats()["calls"])
