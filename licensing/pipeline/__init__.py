"""The queue pipeline: from a trigger's input to a concluded run, with one direction of dependency.

::

    handlers ──► admission ──► queues, requests
        │
        ├──────► run ──► fanout ──► conclusion ──► crosscheck, rules, alerts, store
        │         │        │            ▲
        │         │        └─► parts    │      (run and fanout ──► crosscheck: the scan's summary)
        │         └─────────────────────┘
        ├──► planning ──► conclusion (FINISHED), plan, alerts, store
        └──► schedule                         (every module ──► runtime: settings, store, clock, …)
    conclusion ──► publishing (report, store): the run's report to REPORT_CONTAINER, before the alerts link it
    publishing ──► viewer (store): the link, and the report served to a signed-in reader (the HTTP trigger)

``handlers`` parse a message and ask ``admission`` whether it may run now (reserved ids, request claims,
the tenant lease, fencing, deferral, rejected-run records); ``run`` reads Graph and either hands a large
tenant to ``fanout`` (chunks on a second queue, ``parts`` are their wire formats) or concludes itself;
both end in ``conclusion`` (``crosscheck``: parts that contradict each other are unreadable and what was not
read is not evaluated; then rules, alerts, the final record). A ``plan`` request goes to ``planning`` instead
(licensing.plan, then the answer stored with its run and sent as a short notice). No module imports one to its
left.
"""
