"""Evaluation: metrics (:mod:`.metrics`), protocol readers and runners
(:mod:`.protocols`), embedding extraction (:mod:`.embed`), reports
(:mod:`.report`) and the ``vlrface eval`` run (:mod:`.run`)."""
