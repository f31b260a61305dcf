"""Record real histories of every workflow type from one demo change on a throwaway stack.

Run `.venv/bin/python -m tests.workflows.record_histories` after an intended change to a workflow's
command sequence; `test_replay.py` then replays the new histories (and fails on the old ones).

The `before-*` histories stay as they are: workflows that ran on older code must still replay.
`before-one-shape-*` come from the paths a demo does not take (rollback saga, rejections, freeze
override, supersedes, lane queues, aborts), recorded at a894203, before EnvironmentRollout became a
package: the rollouts from the scenarios of `test_rollout.py`, the changes from lane scenarios with
stand-in activities (two to three changes of one app in one lane). `before-search-attributes-split-*`
are the demo's histories from when one BatonStage attribute held a change's state, a rollout's step
and its outcome; `before-status-memos-*` are from before workflows published their status and gate
as memos and approvals were bound to content. `image_refresh.json` is not the demo's: it is the refresh of the scenario in
`tests/e2e/test_mirror.py` that found an upstream update and opened a pin bump PR. Nor are
`ci_batch.json` (a CI schedule's run that found three commits), `change_batch.json` (the change it
started) and `change_batched.json` (a PR merged into a branch integrated on a schedule): they are
from `tests/workflows/test_ci_batch.py`'s scenarios.
`holds_prod.json` was first recorded from the scenario of `test_promotion_graph.py` that holds prod
(a hold placed, a change stopped, a hold on another app, the first lifted); a demo re-records it
(every change asks its environments' holds workflows).
`reconcile.json` is one Reconcile run (its single activity) that signalled a missed merge.
`before-stop12-*` are the demo's histories as recorded before the re-record of 2026-12-01, which
took in the paths patched since (image test step, CI schedule, promotion graph, capped approvals,
verification of the running version first, commit authors, PR comment, forge deployments, the CI
failed and revert notices, environments spanning clusters).
`before-candidates-ci_pipeline.json` is CI as it ran before it staged candidates beside its
checks (the push through the engine, then the rendered check, after every check), and
`before-candidates-pr_pipeline.json` the PR pipeline before it ran its checks but `test` lower.
`before-publish-beside-push-ci_pipeline.json` is CI as it ran before it published the artifact
beside the push rather than after it.
`before-comment-handover-*` are the change and its rollouts from before a rollout ending left its
last comment write to the change (2026-12-02).
`long_tests.json`, `pr_pipeline_long_tests_ahead.json` and `ci_pipeline_long_tests_ahead.json`
are from the first scenario of `tests/workflows/test_long_tests_ahead.py` (`ci.long_tests:
pull_request`): the PR pipeline that started the long tests, their run, and CI of the merge
that used its result. `change_long_tests_cancelled.json` and `long_tests_cancelled.json` are from
its scenario of a newer head: the change that cancelled the first head's long tests, then the
newer head's when the PR was closed, and the first head's run. They were recorded again on
2026-12-02, when the pipelines began coalescing their upserts and CI took the long tests' result
through the run's `long_tests_passed` Update (`long_tests.json` holds it); the ones before are
`before-coalesced-pipelines-*`, with the demo's PR and CI pipelines of before.
`before-baseline-*` are the demo's histories from before new runs took every patch through one
marker (`workflows.patches.BASELINE`, 2026-12-02), each patch its own marker and version upsert.
`before-long-tests-default-pr_pipeline.json` and `-ci_pipeline.json` are the demo's pipelines from
before an app with long tests started them ahead by default (`ci.long_tests` unset, 2026-12-02):
the PR pipeline without them, CI of the merge running them; the demo's now take the
`long-tests-ahead-by-default` patch, start them beside the PR pipeline and take their result.
"""

import json
import os
import subprocess
import tempfile
from pathlib import Path

from baton.tools import find_tool
from tests.e2e.stack import start_stack, stop_stack

os.environ.setdefault("BATON_BASE_IMAGE", "localhost/baton-python-base:bookworm")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="record-"))
    stack = start_stack(work)
    try:
        run = stack.baton("demo", "--auto-approve", "--json")
        summary = json.loads(run.stdout)
        commit = summary["commit"]
        out = Path(Path(__file__).parent / "histories")
        ids = {
            "change": summary["change_id"],
            "pr_pipeline": summary["change_id"] + "/pr-1",
            "ci_pipeline": summary["change_id"] + "/ci",
            "rollout_dev": f"rollout/sample-app/dev/{commit}",
            "rollout_prod": f"rollout/sample-app/prod/{commit}",
            "lane_prod": "lane/sample-app/prod",  # running: its history so far
            "holds_prod": "hold/prod",  # running too
        }
        for name, wid in ids.items():
            shown = subprocess.run(
                [
                    find_tool("temporal"),
                    "workflow",
                    "show",
                    "--address",
                    stack.env["TEMPORAL_ADDRESS"],
                    "-w",
                    wid,
                    "--output",
                    "json",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            (out / f"{name}.json").write_text(
                json.dumps({"workflow_id": wid, "history": json.loads(shown.stdout)}, indent=1)
            )
            print(name, wid, len(shown.stdout))
    finally:
        stop_stack(stack)


if __name__ == "__main__":
    main()
