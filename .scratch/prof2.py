import sys, time, datetime as dt, yappi
sys.path.insert(0, "/work/wt-org/benchmarks")
from orgfleet import sandbox, seed, parse_org, account_ids, role_arn, REGIONS
org = parse_org(sys.argv[1])
with sandbox("latency=0ms") as box:
    seed(box, org)
    from awsops.session import SessionFactory
    from awsops.config import ClientSettings, Target
    from awsops.decommission.planner import build_plan
    from awsops.decommission.model import PlanCriteria
    crit = PlanCriteria(older_than_days=30, protect_tags=("awsops:protect","DoNotDelete"))
    def targets(n_acc):
        return [Target(region=r, account_id=a, role_arn=role_arn(a)) for a in account_ids(org.accounts)[:n_acc] for r in REGIONS[:org.regions]]
    def run(n):
        f = SessionFactory(region="us-east-1", settings=ClientSettings(endpoint_url=box.endpoint))
        t=time.process_time(); w=time.time()
        p = build_plan(f, targets(n), crit)
        return time.process_time()-t, len(p.chosen)
    run(1)
    c1, _ = run(1); cN, ch = run(org.accounts)
    print(f"marginal cpu per target {(cN-c1)/((org.accounts-1)*org.regions)*1000:.1f} ms; chosen {ch}")
    yappi.set_clock_type("cpu"); yappi.start()
    run(org.accounts)
    yappi.stop()
    st = yappi.get_func_stats(); st.sort("tsub")
    st.print_all(out=sys.stdout, columns={0:("name",70),1:("ncall",10),2:("tsub",8),3:("ttot",8)})
