"""The demo's terminal progress (recipes/demo/progress.py) on synthetic logs written the
way SpeechBrain writes them."""
import io
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "recipes", "demo"))
import demo  # noqa: E402  (recipes/demo/demo.py)
import progress as P  # noqa: E402

LOGGER = "speechbrain.utils.train_logger - "
ASR_EPOCH = ("epoch: {e}, lr: 2.19e-03 - train loss: {loss} - valid loss: 1.95, "
             "valid WER: {wer}, valid CER: 54.51")
KWS_EPOCH = ("epoch: {e}, lr: 4.00e-03 - train loss: 1.76, train code_flip: 1.39e-01, "
             "train code_dist: 0.25 0.12 0.06 0.07 - valid loss: 9.97e-01, valid ErrorRate: {err}")


def bar(i, n, loss=None):
    tail = f", train_loss={loss}]" if loss is not None else "]"
    return f"\r {100 * i // n:3d}%|##   | {i}/{n} [00:{i:02d}<00:10,  6.16it/s{tail}"


def test_parse_stats_and_metrics():
    stats = P.parse_stats(ASR_EPOCH.format(e=3, loss=2.74, wer=90.5))
    assert stats["epoch"] == "3" and stats["train loss"] == "2.74" and stats["valid WER"] == "90.5"
    assert P.metric(stats) == ("WER", 90.5)
    label, acc = P.metric(P.parse_stats(KWS_EPOCH.format(e=1, err="2.87e-01")))
    assert label == "acc" and abs(acc - 71.3) < 1e-9
    assert P.metric({"valid loss": "1.0"}) is None


def test_run_progress_through_an_asr_training():
    run = P.RunProgress("conformer_fp", total_epochs=4, started=0.0)
    run.feed("speechbrain.core - Beginning experiment!\n", now=5)
    assert run.phase == "starting" and run.seconds_left(5) is None
    run.feed("speechbrain.utils.epoch_loop - Going into epoch 1\n", now=10)
    run.feed(bar(1, 10, 4.87) + bar(5, 10, 3.5), now=20)  # the last bar is unfinished
    assert (run.epoch, run.batch, run.batches, run.phase) == (1, 5, 10, "train")
    assert run.loss() == 3.5
    assert abs(run.fraction() - 0.125) < 1e-9
    # 10 s for an eighth of the training: 70 s to go
    assert abs(run.seconds_left(20) - 70) < 1e-6
    line = P.format_line(run, now=20)
    assert line.startswith("conformer_fp  epoch 1/4 [5/10]  loss 3.5")
    assert "20s elapsed" in line and "~1m10s left" in line
    run.feed(bar(10, 10, 3.1) + "\r" + bar(3, 4) + "\n", now=28)  # validation: no train_loss
    assert run.phase == "valid" and abs(run.fraction() - 0.25) < 1e-9
    assert "[valid]" in P.format_line(run, now=28)
    run.feed(LOGGER + ASR_EPOCH.format(e=1, loss=2.74, wer=90.5) + "\n", now=30)
    assert run.epochs_done == 1 and run.loss() == 2.74 and run.metric == ("WER", 90.5)
    assert run.take_change() and not run.take_change()
    line = P.format_line(run, now=30)
    assert "epoch 1/4  loss 2.74  valid WER 90.50" in line and "~1m00s left" in line
    plain = P.format_line(run, now=30, plain=True)
    assert plain == "   conformer_fp, epoch 1/4, loss 2.74, valid WER 90.50, 30s elapsed, ~1m00s left"
    for e in (2, 3, 4):
        run.feed(f"speechbrain.utils.epoch_loop - Going into epoch {e}\n" + bar(10, 10, 2.0) + "\n"
                 + LOGGER + ASR_EPOCH.format(e=e, loss=2.0, wer=50 - e) + "\n", now=30 + 20 * e)
    run.feed(bar(2, 5), now=120)  # the test set
    assert run.phase == "test" and run.seconds_left(120) == 0.0
    run.feed("\r" + bar(5, 5) + "\n" + LOGGER + "Epoch loaded: 4 - test loss: 1.1, test WER: 40.25\n",
             now=125)
    assert run.test_metric == ("WER", 40.25)
    assert P.format_line(run, now=125).startswith("conformer_fp  epoch 4/4, testing  loss 2  test WER 40.25")


def test_keyword_spotter_shows_accuracy_and_bytes_split_mid_character():
    run = P.RunProgress("kws_ds3", total_epochs=20, started=0.0)
    text = ("speechbrain.utils.epoch_loop - Going into epoch 1\n"
            + bar(68, 68, 1.7).replace("##", "██") + "\n"
            + LOGGER + KWS_EPOCH.format(e=1, err="2.87e-01") + "\n").encode()
    cut = text.index("██".encode()) + 1  # inside a multi-byte character
    run.feed(text[:cut], now=1)
    run.feed(text[cut:], now=2)
    assert run.epochs_done == 1 and run.metric[0] == "acc"
    assert "valid acc 71.3%" in P.format_line(run, now=2)


def test_time_left_of_a_resumed_run_counts_from_where_it_resumed():
    run = P.RunProgress("crdnn_fp", total_epochs=10, started=0.0)
    run.feed("speechbrain.utils.epoch_loop - Going into epoch 6\n", now=100)
    run.feed(LOGGER + ASR_EPOCH.format(e=6, loss=1.0, wer=30) + "\n", now=130)
    # one epoch in 30 s, four to go
    assert abs(run.seconds_left(130) - 120) < 1e-6


def test_total_epochs_from_the_command_or_the_resolved_hparams(tmp_path):
    assert P.total_epochs(["x.py", "--number_of_epochs=3"], str(tmp_path)) == 3
    assert P.total_epochs(["x.py"], str(tmp_path)) is None
    (tmp_path / "hyperparams_resolved.yaml").write_text(
        "seed: 1\nnumber_of_epochs: 28                     # demo budget\nlr: 1\n")
    assert P.total_epochs(["x.py"], str(tmp_path)) == 28
    assert P.format_duration(None) == "?" and P.format_duration(3725) == "1h02m"


def test_board_plain_mode_prints_one_line_per_finished_epoch(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("speechbrain.utils.epoch_loop - Going into epoch 1\n" + bar(3, 10, 2.0))
    out = io.StringIO()
    board = P.Board(stream=out, tty=False)
    board.add("a", str(log), ["x.py", "--number_of_epochs=2"], now=0)
    board.poll(now=1)
    assert out.getvalue() == ""  # no epoch finished yet
    with open(log, "a") as fh:
        fh.write(bar(10, 10, 1.5) + "\n" + LOGGER + ASR_EPOCH.format(e=1, loss=1.5, wer=60) + "\n")
    board.poll(now=2)
    board.poll(now=3)
    assert out.getvalue() == "   a, epoch 1/2, loss 1.5, valid WER 60.00, 2s elapsed, ~1s left\n"
    board.message("   done: a")
    assert out.getvalue().endswith("   done: a\n") and "\x1b" not in out.getvalue()


def test_board_on_a_terminal_redraws_its_block_below_the_messages(tmp_path):
    logs = []
    for name in ("a", "b"):
        logs.append(tmp_path / f"{name}.log")
        logs[-1].write_text("speechbrain.utils.epoch_loop - Going into epoch 2\n" + bar(4, 8, 0.5))
    out = io.StringIO()
    board = P.Board(stream=out, tty=True, interval=0)
    for name, log in zip("ab", logs):
        board.add(name, str(log), ["x.py", "--number_of_epochs=5"], now=0)
    board.poll(now=1)
    first = out.getvalue()
    assert "a  epoch 2/5 [4/8]  loss 0.5" in first and "b  epoch 2/5 [4/8]" in first
    board.message("$ next command")
    after = out.getvalue()[len(first):]
    # go back up over the two live lines, erase them, print the message, redraw
    assert after.startswith("\x1b[2F\x1b[J$ next command\n") and after.count("\x1b[2K") == 2
    board.finish("a")
    assert board.lines(2) == [P.format_line(board.runs["b"][0], 2)]
    board.close()
    assert out.getvalue().endswith("\x1b[1F\x1b[J")


def test_demo_pool_reports_the_epochs_of_its_trainings(tmp_path):
    code = ("import sys; print('speechbrain.utils.epoch_loop - Going into epoch 1');"
            f"print({LOGGER + ASR_EPOCH.format(e=1, loss=2.5, wer=70)!r}); sys.stdout.flush()")
    cmd = [sys.executable, "-c", code, "--number_of_epochs=1", "--output_folder=out/fake"]
    out = io.StringIO()
    demo.run_pool([(cmd, None, 1)], 2, str(tmp_path), board=P.Board(stream=out, tty=False))
    text = out.getvalue()
    assert "   fake, epoch 1/1, loss 2.5, valid WER 70.00" in text
    assert "done: fake" in text


