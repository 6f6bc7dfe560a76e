"""Evaluation: what is generated after a session, how it is scored, and the numbers reported from the scores.

    metrics.py     THE table of metric definitions (name, label, title, direction, definition, where it is shown);
                   scoring, summaries, reports, plots, `lfsbench check` and the CLI all read it
    functional.py  pure functions: per-image scores from embeddings, intervals (over images, over seeds)
    records.py     the kinds of per-image score records (concept, class, control, ...) and their columns
    plan.py        the evaluation plan: which images to generate after a session, with which prompts and seeds
    scorer.py      one scorer for class, concept and control images alike (embeddings -> score records)
    copying.py     copy detection: distance to the nearest training shot in pixels, threshold from held-out views
    tables.py      pure functions over score frames: session rows, matrices, session figures, the run summary

Adding a metric: its function (functional.py or tables.py), its entry in metrics.py, its test (tests/test_metrics.py).
"""
