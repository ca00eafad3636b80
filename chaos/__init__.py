"""A fault harness across a network (issue 29): namespaces, a nemesis and a history checker.

Run it with `make chaos` (20 minutes) or `make chaos-ci` (under 3 minutes, fixed seed); it is
not part of `make test`. Modules:

- net.py       network namespaces, veth pairs on one bridge, and the faults on links
- servers.py   the harness's own PostgreSQL cluster and Redis broker, on their own addresses
- stack.py     the Procfile's processes, each group in its namespace
- receiver.py  the webhook receiver (its own namespace), which logs every delivery
- workload.py  tenants and triggers, created through the API
- nemesis.py   the fault schedule, a pure function of the seed
- sampler.py   in-progress runs per tenant, sampled every 100 ms from PostgreSQL
- checker.py   the history checker: pure, fed plain records
- history.py   reads the history from PostgreSQL, the receiver's log and the workers' logs
- report.py    the Markdown report and its timeline plot
- run.py       the orchestration (`python -m chaos`)
"""
