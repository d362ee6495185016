"""Automation (services, layer 2, the top of the services): what runs the loop without a person.

`ci.py` is what a CI system runs on every change: version and validate changed data, run the
project's tests, run the pipeline and check its gates, and write a report for the pull request.
Triggers and the retraining loop will live here too. It sits above every other service and
uses them (data, pipelines, tracking); nothing in services imports it.
"""
