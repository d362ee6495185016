"""Services (layer 2): the product's verbs, built on the stores they are handed.

A service never reads settings, prints or prompts: it takes its stores and values as constructor
arguments, returns records or raises MloopError. Within services: automation above serving and
monitoring, above pipelines and registry, above tracking, data, storage and predictions.
"""
