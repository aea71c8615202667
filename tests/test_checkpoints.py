"""One best-checkpoint finder: export and init_from_fp pick the checkpoint the recipe tests."""
import time

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from denseshift_speech.errors import UserError
from denseshift_speech.integrations.speechbrain import quantize, recipe
from denseshift_speech.integrations.speechbrain.checkpoints import AtomicCheckpointer, evaluated_checkpoint
from denseshift_speech.integrations.speechbrain.export import best_checkpoint


def _run(tmp_path, metrics, key="WER"):
    save = tmp_path / "run" / "save"
    model = torch.nn.Linear(2, 2)
    ck = AtomicCheckpointer(save, recoverables={"model": model})
    paths = []
    for i, m in enumerate(metrics):
        with torch.no_grad():
            model.weight.fill_(float(i))
        paths.append(ck.save_checkpoint(meta={key: m}).path)
        time.sleep(0.01)
    return tmp_path / "run", paths


@pytest.mark.parametrize("key", ["WER", "ErrorRate"])
def test_the_recipes_checkpoint_is_the_one_speechbrain_evaluates(tmp_path, key):
    run, paths = _run(tmp_path, [5.0, 3.0, 4.0], key)
    want = Checkpointer(run / "save").find_checkpoint(min_key=key).path
    assert want == paths[1]
    assert evaluated_checkpoint(str(run)).path == want
    assert evaluated_checkpoint(str(run / "save")).path == want
    assert best_checkpoint(str(run / "save")) == str(want)
    assert quantize._best_checkpoint(str(run)) == str(want)
    model = torch.nn.Linear(2, 2)
    recipe.load_float_checkpoint(model, str(run))
    assert float(model.weight[0, 0]) == 1.0  # the second checkpoint's weights


def test_no_checkpoint(tmp_path):
    assert evaluated_checkpoint(str(tmp_path)) is None
    with pytest.raises(UserError, match="no checkpoint"):
        best_checkpoint(str(tmp_path))
    with pytest.raises(UserError, match="not a recipe checkpoint"):
        best_checkpoint(str(tmp_path), checkpoint=str(tmp_path))
