"""Automation (services, layer 2, the top of the services): what runs the loop without a person.

`ci.py` is what a CI system runs on every change: version and validate changed data, run the
project's tests, run the pipeline and check its gates, and write a report for the pull request.
`triggers.py` checks what starts a pipeline by itself (a `new_data` trigger's landed files,
listed and read by `landing.py`) and lands fired files as a dataset's next version; the
retraining loop will live here too. It sits above every other service and
uses them (data, pipelines, tracking); nothing in services imports it.
"""
