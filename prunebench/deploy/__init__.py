"""Deploying an answer: ``prunebench export`` writes a model as files that run without prunebench
(ONNX for onnxruntime, a folder ``transformers`` loads with ``trust_remote_code``), checked in a
separate process against ``load_model``. After ``report``: it reads a run's budget answer."""
