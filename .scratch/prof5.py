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
    def targets(n): return [Target(region=r, account_id=a, role_arn=role_arn(a)) for a in account_ids(org.accounts)[:n] for r in REGIONS[:org.regions]]
    def run(n, c):
        f = SessionFactory(region="us-east-1", settings=ClientSettings(endpoint_url=box.endpoint))
        t=time.process_time(); build_plan(f, targets(n), crit, concurrency=c); return time.process_time()-t
    run(1, 1)
    for c in (1, 8):
        a = run(1, c); b = run(org.accounts, c)
        print(f"concurrency {c}: marginal cpu per target {(b-a)/((org.accounts-1)*org.regions)*1000:.1f} ms")
    box.reset_proxy(); run(org.accounts, 8); print(box.proxy_stats()["calls"])
    import cProfile, pstats
    pr = cProfile.Profile(); pr.enable(); run(org.accounts, 1); pr.disable()
    pstats.Stats(pr).sort_stats("cumtime").print_stats(r"awsops|create_client|_make_api_call|_recursive_copy|Session.__init__|getproxies|parse\b|_send|sign\b|thread|_emit", 45)
