import cProfile, pstats, sys, io, time
sys.path.insert(0, "/work/wt-org/benchmarks")
from orgfleet import sandbox, seed, parse_org, targets_file
org = parse_org(sys.argv[1])
with sandbox("latency=0ms") as box:
    seed(box, org)
    tf = targets_file(box, org)
    from awsops.cli.main import main
    args = ["decommission", "plan", "--sandbox", "--targets", str(tf), "--older-than", "30d", "-o", str(box.home/"p.json")]
    try: main(args)
    except SystemExit: pass
    (box.home/"p.json").unlink(missing_ok=True)
    pr = cProfile.Profile()
    t = time.process_time()
    pr.enable()
    try: main(args)
    except SystemExit: pass
    pr.disable()
    print("cpu", time.process_time() - t, file=sys.stderr)
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(35); print(s.getvalue()[:9000], file=sys.stderr)
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("cumtime").print_stats(60); print(s.getvalue()[:12000], file=sys.stderr)
