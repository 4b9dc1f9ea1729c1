"""`tmx tune`: Ray Tune (ASHA) on the baseline jobs, its choice written into the study and picked up by the plan."""

from conftest import run_tmx

from matrix.plan import plan
from matrix.spec import load_study
from matrix.tune import SPACE

STUDY = """\
name: tuned
# a comment that must survive
image_size: 32
init: scratch
tasks: [segmentation]
datasets:
  - {name: a, domain: driving, train: 16, val: 8}
  - {name: b, domain: aerial, train: 16, val: 8}
target_sizes: [8]
finetune: {steps: 4, batch_size: 8}
finetune_by_task:
  segmentation: {lr: 0.5}
"""


def test_tune_writes_per_task_values_that_the_plan_uses(tmp_path):
    study_file = tmp_path / "tuned.yaml"
    study_file.write_text(STUDY)
    before = {j.key for j in plan(load_study(study_file))}
    result = run_tmx("tune", "tuned.yaml", "--trials", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "segmentation: lr" in result.stdout
    text = study_file.read_text()
    assert "# a comment that must survive" in text and text.count("finetune_by_task") == 1
    study = load_study(study_file)
    tuned = study.finetune_by_task["segmentation"]
    assert SPACE["lr"][0] <= tuned.lr <= SPACE["lr"][1] and tuned.lr != 0.5
    assert SPACE["weight_decay"][0] <= tuned.weight_decay <= SPACE["weight_decay"][1]
    jobs = plan(study)
    for job in jobs:
        if job.kind in ("baseline", "transfer"):
            assert job.schedule["lr"] == tuned.lr and job.schedule["steps"] == 4
        elif job.kind == "reference":
            assert job.schedule == {} and job.key in before  # a trivial predictor has no schedule: not rerun
        else:
            assert job.schedule["lr"] == study.source.lr  # sources keep their own schedule
    assert {j.key for j in jobs if j.kind == "source"} <= before  # sources unchanged: not rerun
    assert not {j.key for j in jobs if j.kind == "baseline"} & before  # finetuning jobs changed: rerun
    assert list((tmp_path / "outputs" / "tuned" / "tune").glob("tune-segmentation*")), "Ray Tune's results"


def test_tune_with_a_generic_init_needs_the_pretrain_first(tmp_path):
    (tmp_path / "g.yaml").write_text(STUDY.replace("init: scratch", "init: generic"))
    result = run_tmx("tune", "g.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "g.yaml: init: 'generic'" in result.stderr and "run `tmx run g.yaml` first" in result.stderr


def test_a_task_types_own_schedule_steps_are_planned_and_survive_tune_writing_its_block(tmp_path):
    """`finetune_by_task: {keypoints: {steps: ...}}` gives that task type's finetuning its own length (keypoints need
    longer than the rest); `tmx tune`'s block rewrite keeps it beside the tuned lr and weight decay."""
    from matrix.tune import write_tuned

    study_file = tmp_path / "tuned.yaml"
    study_file.write_text(STUDY.replace("tasks: [segmentation]", "tasks: [segmentation, depth]")
                          .replace("segmentation: {lr: 0.5}", "segmentation: {lr: 0.5}\n  depth: {steps: 9}"))
    study = load_study(study_file)
    steps = {(j.kind, j.task): j.schedule["steps"] for j in plan(study) if j.kind in ("baseline", "transfer")}
    assert steps == {("baseline", "segmentation"): 4, ("transfer", "segmentation"): 4,
                     ("baseline", "depth"): 9, ("transfer", "depth"): 9}  # fmt: skip
    kept = {task: spec.model_dump(exclude_none=True) for task, spec in study.finetune_by_task.items()}
    write_tuned(study_file, {"segmentation": {"lr": 0.01, "weight_decay": 0.001, "trials": 3}}, kept)
    tuned = load_study(study_file).finetune_by_task
    assert tuned["depth"].steps == 9 and tuned["segmentation"].lr == 0.01 and tuned["segmentation"].steps is None
    assert "# a comment that must survive" in study_file.read_text()
