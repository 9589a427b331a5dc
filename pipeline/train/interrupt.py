"""Stop training cleanly on SIGINT (Ctrl-C) or SIGTERM (``kill``, a job scheduler): at a step boundary, after a
checkpoint, so that ``training.resume_from_checkpoint=true`` continues exactly where the run stopped.

The signal handler only records the signal; :class:`StopOnSignal` turns it into ``control.should_save`` and
``control.should_training_stop`` at the end of the current optimizer step, where model, optimizer, scheduler
and RNG states are consistent, so the Trainer writes a normal checkpoint and leaves its loop. Under DDP every
rank must stop at the same step (a rank that went on would wait forever in the next all-reduce), so the flag
is combined across processes with accelerate's ``set_trigger``/``check_trigger``. A second Ctrl-C stops at
once: the checkpoint being written may then be incomplete, and resuming skips incomplete checkpoints
(:func:`pipeline.train.trainer.resume_checkpoint`).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from transformers import TrainerCallback

from pipeline.errors import TrainingInterrupted

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalStop:
    """Context manager: while active, SIGINT/SIGTERM request a stop instead of killing the process.

    The previous handlers come back on exit, so Ctrl-C after training (evaluation, export) behaves as usual.
    Handlers can only be installed from the main thread; elsewhere (a training run inside a thread) this
    does nothing and signals keep their usual effect.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            if signum != signal.SIGINT:
                # Repeated SIGTERMs say nothing new (a worker gets one per exiting thread of a killed launcher,
                # see pipeline.launch.stop_with_the_launcher; a scheduler follows up with SIGKILL anyway).
                return
            # Ctrl-C again: the user insists, stop now. Raised from wherever the main thread is; the checkpoint
            # being written (if any) may be incomplete, and resume skips it.
            raise TrainingInterrupted(
                f"stopped at once by a second {name}; resume continues from the last complete checkpoint",
                signum=signum,
                checkpoint=None,
            )
        self.signum = signum
        log.warning("%s: stopping after the current step and saving a checkpoint (Ctrl-C again stops at once)", name)


class StoppedAfterCheckpoint(Exception):
    """Raised by :class:`StopOnSignal` right after the Trainer saved the stop checkpoint, to leave ``train()``.

    Leaving by exception (instead of ``control.should_training_stop``) skips what the Trainer does after a normal
    end of an epoch or of training: an evaluation of the half epoch (which would enter the log history and could
    become the "best" checkpoint, so a resumed run would no longer match an uninterrupted one), another save,
    loading the best model. None of that is wanted when the process is about to exit.
    """


class StopOnSignal(TrainerCallback):
    """Saves a checkpoint at the next step boundary once :class:`SignalStop` saw a signal, then leaves training.

    The checkpoint must hold exactly what an uninterrupted run would have at that step, so a resume continues
    identically: inside an epoch it is saved right after the step; at the last step of an epoch the epoch's own
    evaluation (and train-subset scoring) runs first, as it would have anyway; at the last step of training
    nothing changes (training ends normally and the run stops before evaluating the test set).
    The signal that stopped training is :attr:`signum` (a rank stopped by another rank's signal reports SIGTERM).
    """

    def __init__(self, stop: SignalStop, accelerator: Any | None = None) -> None:
        self.stop = stop
        self.accelerator = accelerator
        self.triggered = False
        self._after_epoch_end = False
        self._save_step: int | None = None

    @property
    def signum(self) -> int | None:
        if self.stop.signum is not None:
            return self.stop.signum
        return int(signal.SIGTERM) if self.triggered else None

    def on_step_end(self, args, state, control, **kwargs):
        if self.triggered or not self._stop_now():
            return control
        self.triggered = True
        if state.global_step >= state.max_steps:
            return control  # the last step: the Trainer ends (and saves, per save_strategy) by itself
        if state.epoch is not None and float(state.epoch).is_integer():
            control.should_training_stop = True  # leave after this epoch end's evaluation, then save (below)
            self._after_epoch_end = True
        else:
            control.should_save = True  # the Trainer saves right after this event, then calls on_save
            self._save_step = state.global_step
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._after_epoch_end:
            control.should_save = True  # after the epoch's evaluation, whatever save_strategy says
            self._save_step = state.global_step
        return control

    def on_save(self, args, state, control, **kwargs):
        if self._save_step is not None and state.global_step == self._save_step:
            raise StoppedAfterCheckpoint
        return control

    def _stop_now(self) -> bool:
        if self.accelerator is None or self.accelerator.num_processes == 1:
            return self.stop.requested  # no collective (and no device sync) per step in one process
        if self.stop.requested:
            self.accelerator.set_trigger()
        return bool(self.accelerator.check_trigger())  # True on every rank once any rank was signalled
