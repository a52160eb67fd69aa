"""The comparison study: train every method with several seeds, test in-domain, across domains and
under attack, and write a report that says which of the paper's claims held (src/study.py)."""
