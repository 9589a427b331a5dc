"""The commands' workflows: each calls the stages once, in order, and hands plain values from one to the next.

``train`` (``train.py`` / ``spam-tune train``), ``evaluate`` (``spam-tune evaluate``), ``search`` (``spam-tune
search``); ``timing`` measures a run's stages and start-up, ``process_exit`` ends a command's process once its
outputs are written. ``pipeline.cli`` parses the command line and calls these; the stages never import them.
"""
