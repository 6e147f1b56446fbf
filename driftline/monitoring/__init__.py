"""The drift logic, without Kafka: detectors, reference profiles, the label join and the monitor.

Import what you need from its module (nothing is re-exported here, so importing one module loads
only what that module needs):

* :mod:`driftline.monitoring.detectors`: the detectors (:mod:`~driftline.monitoring.base`, the
  contract; :mod:`~driftline.monitoring.label_free`, the tests that need no labels);
* :mod:`driftline.monitoring.profile`: a model version's reference profile;
* :mod:`driftline.monitoring.join`: late labels joined with their predictions;
* :mod:`driftline.monitoring.state`: detector state in checkpoints;
* :mod:`driftline.monitoring.monitor`: the monitor, detectors per live version, alerts and requests.

The monitor's Kafka service is :mod:`driftline.streams.monitor_service`; every service's Prometheus
metrics are in :mod:`driftline.metrics`.
"""
