"""The SpeechBrain glue: hparams loading with ``extends`` (:mod:`.hparams`), applying
DenseShift from hparams and the shared recipe helpers (:mod:`.recipe`), the packed-file
export (:mod:`.export`), the crash-safe checkpointer (:mod:`.checkpoints`), model
classes the hparams name (:mod:`.models`), the tokenizer (:mod:`.tokenizer`), the word
n-gram LM (:mod:`.lm`) and the ``make demo`` scheduler (:mod:`.demo`).

Modules are imported on their own (``from denseshift_speech.integrations.speechbrain
import recipe``); nothing here is imported by the inference layers.
"""
