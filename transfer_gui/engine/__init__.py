"""The training engine: pure Python and torch. Never imports Qt; importing this package imports
nothing else, so the torch-free modules (rules, formats, runs, events, control, wording, scan)
stay cheap for the window and the command line.

A run, in the order it happens:

* ``rules``        what a run will do, from names and the config (split, frozen groups, rates, cache plan)
* ``prepare``      device, split (``data``, ``scan``), model (``catalog``, ``surgery``), groups and rates
* ``loaders``      the batches the cache plan asks for (``features``, ``boundary``, ``data``)
* ``loop``         ``Trainer``: epochs of ``step.TrainStep`` and validation, the parts' hooks
* ``parts``        the hooks and the run state; ``tracking``, ``checkpointing``, ``ddp`` are parts
* ``lrfind``       the learning-rate sweep, through the same training step
* ``checkpoint``   the app checkpoint: write, find, read (the only reader), rebuild
* ``export``, ``predict``  other formats with a parity check, and classifying with any of them
* ``rundir``, ``runs``     a run folder's files, and the list of a project's runs
* ``ranks``, ``distributed``  what torchrun ranks share, and running as one of them
"""
