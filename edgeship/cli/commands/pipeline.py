"""`edgeship run` (the main job) and `edgeship pipeline compile | submit | schedule`.

Every parameter is checked before anything runs or is submitted: unknown names, budgets that are
negative or not numbers, a data URI that does not exist, a missing image for a cloud target, an
invalid cron, and the machines (--profile, --accelerator-*, --resource, --multi-worker: a GPU
Vertex AI does not offer, a count of 0 with a type, memory below what a step needs), each error
naming the option. Heavy imports (kfp, aiplatform, TensorFlow through the steps) happen in handlers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# flag -> pipeline parameter
_PARAM_FLAGS = {
    "data_uri": "data_uri", "model_name": "model_name", "channel": "channel", "bucket": "bucket",
    "input_size": "input_size", "epochs": "epochs", "learning_rate": "learning_rate",
    "qat_epochs": "qat_epochs", "seed": "seed", "qat_objective": "qat_objective",
    "early_stop": "early_stop",
    "budget": "accuracy_budget", "latency_budget": "latency_budget_ms", "tolerance": "tolerance",
    "min_map": "min_map", "min_map50": "min_map50", "min_app_version": "min_app_version",
}


def _add_param_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pipeline parameters (defaults: the pipeline's)")
    g.add_argument("--data-uri", help="dataset folder or gs:// prefix; empty = the embedded default")
    g.add_argument("--model-name", help="model name (gs://BUCKET/models/NAME/)")
    g.add_argument("--channel", help="release channel, e.g. stable, beta")
    g.add_argument("--bucket", help="model bucket")
    g.add_argument("--input-size", help="input side in pixels")
    g.add_argument("--epochs", help="float training epochs")
    g.add_argument("--learning-rate", help="peak learning rate of the float training")
    g.add_argument("--qat-epochs", help="quantization-aware fine-tuning epochs")
    g.add_argument("--seed", help="seed of the float training and the QAT fine-tune")
    g.add_argument("--qat-objective", help="what QAT fine-tunes towards: both (labels + the float "
                                           "model's outputs), distill, labels")
    g.add_argument("--early-stop", help="which epoch of the float training is kept (and ends it "
                                        "early): val_loss, val_map (measured every epoch), none")
    g.add_argument("--budget", help="accuracy budget: max ΔmAP@[.5:.95] vs float, in mAP points; 'none' = not configured")
    g.add_argument("--latency-budget", help="max 1-thread median latency in ms (0 = none)")
    g.add_argument("--tolerance", help="max mAP drop vs the channel's current model, points")
    g.add_argument("--min-map", help="quality floor: min mAP@[.5:.95] (0..1) of any release, the first "
                                     "included; 0 = off")
    g.add_argument("--min-map50", help="quality floor: min mAP@.5 (0..1) of any release, the first "
                                       "included; 0 = off")
    g.add_argument("--min-app-version", help="lowest client app version that can run the model")
    g.add_argument("--force-promote", action="store_true", default=None,
                   help="publish even if the gate fails (recorded in the decision and manifest)")
    g.add_argument("--auto-quantize", action="store_true", default=None,
                   help="candidates from the autoquant search (fastest within --budget, selective int8 "
                        "included) instead of the fixed schemes; limits: --param "
                        "autoquant_max_candidates=N, --param autoquant_max_seconds=S")
    g.add_argument("--param", action="append", metavar="NAME=VALUE", default=[],
                   help="any pipeline parameter by name (repeatable)")


def _collect_params(args: argparse.Namespace) -> dict[str, str]:
    from pipelines.params import parse_assignments

    values: dict[str, object] = parse_assignments(args.param, where="--param")
    for flag, name in _PARAM_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            values[name] = value
    for name in ("min_map", "min_map50"):  # a floor is an mAP, not points: refuse 30 before running
        if name in values:
            try:
                ok = 0.0 <= float(values[name]) <= 1.0
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"--{name.replace('_', '-')} must be an mAP in 0..1, got {values[name]!r}")
    if getattr(args, "force_promote", None):
        values["force_promote"] = True
    if getattr(args, "auto_quantize", None):
        values["auto_quantize"] = True
    return values


_MACHINE_FLAGS = ("profile", "gpu_image", "accelerator_type", "accelerator_count", "resource",
                  "multi_worker")


def _add_machine_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("machines and images (docs/deploy.md: machines, GPUs, costs)")
    g.add_argument("--profile", choices=("cpu", "gpu"), default=None,
                   help="resource profile: cpu (default: every step CPU-only) or gpu (one NVIDIA T4 "
                        "for train and qat, on the GPU image)")
    g.add_argument("--gpu-image", help="image for the steps with a GPU (default $EDGESHIP_GPU_IMAGE, "
                                       "else the --image repository + '-gpu', same tag)")
    g.add_argument("--accelerator-type", metavar="TYPE",
                   help="GPU for train and qat, a Vertex AI name (NVIDIA_TESLA_T4, NVIDIA_L4, ...)")
    g.add_argument("--accelerator-count", type=int, metavar="N", help="GPUs per machine for train and qat")
    g.add_argument("--resource", action="append", default=None, metavar="STEP.FIELD=VALUE",
                   help="override one step's cpu, memory, accelerator_type, accelerator_count "
                        "(or train.machine_type for --multi-worker), e.g. train.memory=32G (repeatable)")
    g.add_argument("--multi-worker", type=int, default=None, metavar="N",
                   help="run train as a Vertex AI CustomJob with N replicas (MultiWorkerMirroredStrategy)")


def _resource_plan(args: argparse.Namespace):
    from pipelines import resources

    return resources.resolve(args.profile or "cpu", target=args.target, overrides=args.resource or (),
                             accelerator_type=args.accelerator_type,
                             accelerator_count=args.accelerator_count,
                             multi_worker=1 if args.multi_worker is None else args.multi_worker)


def _add_cloud_flags(p: argparse.ArgumentParser, *, schedule: bool) -> None:
    p.add_argument("--target", choices=("vertex", "kfp"), default="vertex")
    p.add_argument("--image", help="the edgeship image in your registry (or $EDGESHIP_IMAGE); required")
    p.add_argument("--template", help="a compiled pipeline YAML (default: compile now with --image)")
    p.add_argument("--project", help="GCP project (vertex)")
    p.add_argument("--region", default="us-central1", help="GCP region (vertex)")
    p.add_argument("--pipeline-root", help="gs:// folder for the run's artifacts")
    p.add_argument("--service-account", help="service account the steps run as")
    p.add_argument("--no-cache", action="store_true", help="disable step caching")
    p.add_argument("--host", help="KFP API URL (kfp target)")
    p.add_argument("--experiment", default="edgeship", help="KFP experiment")
    p.add_argument("--display-name", default="edgeship")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything and print the request instead of sending it")
    if schedule:
        p.add_argument("--cron", required=True, help='5-field cron, e.g. "0 3 * * 1" (Vertex also takes "TZ=Europe/Paris 0 3 * * 1")')
        p.add_argument("--max-concurrent-runs", type=int, default=1)
    _add_machine_flags(p)
    _add_param_flags(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run", help="the main job: local stack + the whole pipeline (kfp.local) + a listening client",
        description="Bring up the local cloud, run the whole pipeline with kfp.local on the "
                    "embedded data, publish through the gate, and end with a client holding "
                    "the verified new model.")
    _add_param_flags(run)
    run.add_argument("--root", default="runs", help="pipeline root for local runs (default: runs/)")
    run.add_argument("--no-client", action="store_true", help="do not start the listening client")
    run.add_argument("--no-cache", action="store_true",
                     help="rerun every step (default: reuse unchanged steps' outputs from earlier "
                          "runs of the same code; select and publish always run)")
    run.add_argument("--client-timeout", type=float, default=60.0,
                     help="seconds to wait for the client to hold the new model")
    run.set_defaults(func=_run)

    pipeline = subparsers.add_parser("pipeline", help="compile, submit or schedule the pipeline")
    sub = pipeline.add_subparsers(dest="pipeline_command", metavar="SUBCOMMAND")
    comp = sub.add_parser("compile", help="compile to KFP IR YAML")
    comp.add_argument("--out", default="pipeline.yaml")
    comp.add_argument("--image", help="image for the CPU steps (default $EDGESHIP_IMAGE or the built-in)")
    comp.add_argument("--target", choices=("vertex", "kfp"), default="vertex",
                      help="where it will run: GPU names differ (Vertex AI types vs nvidia.com/gpu)")
    _add_machine_flags(comp)
    comp.set_defaults(func=_compile)
    submit = sub.add_parser("submit", help="submit a run to Vertex AI Pipelines or a KFP cluster")
    _add_cloud_flags(submit, schedule=False)
    submit.set_defaults(func=_submit)
    sched = sub.add_parser("schedule", help="create a Vertex AI schedule or a KFP recurring run")
    _add_cloud_flags(sched, schedule=True)
    sched.set_defaults(func=_schedule)
    pipeline.set_defaults(func=lambda a: (pipeline.print_help(), 2)[1])


def _compile(args: argparse.Namespace) -> int:
    from pipelines.compile import compile_pipeline, load_spec
    from pipelines.placement import summary_lines

    out = compile_pipeline(args.out, image=args.image, gpu_image=args.gpu_image,
                           plan=_resource_plan(args))
    print(f"compiled pipeline: {out}")
    print("\n".join(summary_lines(load_spec(out))))
    return 0


def _prepare_cloud(args: argparse.Namespace, tmp: Path) -> tuple[Path, dict]:
    """Validate everything for a cloud submission; returns (template, typed parameter values)."""
    from pipelines import params as P
    from pipelines.compile import compile_pipeline, load_spec, resolve_image
    from pipelines.placement import check_spec_resources

    image = resolve_image(args.image, required=True)
    if args.target == "vertex":
        missing = [f for f in ("project", "pipeline_root") if not getattr(args, f)]
        if missing:
            raise ValueError("--target vertex needs " + ", ".join("--" + m.replace("_", "-") for m in missing))
    elif not args.host:
        raise ValueError("--target kfp needs --host (the KFP API URL)")
    if args.template:
        given = [f"--{f.replace('_', '-')}" for f in _MACHINE_FLAGS if getattr(args, f, None) is not None]
        if given:
            raise ValueError(f"{', '.join(given)} cannot change a compiled --template: compile again "
                             "with them (edgeship pipeline compile), or leave --template out")
        template = Path(args.template)
        spec = load_spec(template)
        check_spec_resources(spec, args.target)
    else:
        plan = _resource_plan(args)
        template = compile_pipeline(tmp / "pipeline.yaml", image=image, gpu_image=args.gpu_image,
                                    plan=plan)
        spec = load_spec(template)
    values = P.coerce_parameters(spec, _collect_params(args), where="command line")
    P.check_data_uri(str(values.get("data_uri", "")), cloud=True)
    return template, values


def _vertex_target(args: argparse.Namespace):
    from pipelines.submit import VertexTarget

    return VertexTarget(project=args.project, region=args.region, pipeline_root=args.pipeline_root,
                        service_account=args.service_account, enable_caching=not args.no_cache,
                        display_name=args.display_name)


def _submit(args: argparse.Namespace) -> int:
    import tempfile

    from pipelines import submit as S

    with tempfile.TemporaryDirectory() as tmp:
        template, values = _prepare_cloud(args, Path(tmp))
        if args.target == "vertex":
            target = _vertex_target(args)
            if args.dry_run:
                job = S.build_vertex_job(str(template), values, target)
                print(json.dumps({"parent": f"projects/{target.project}/locations/{target.region}",
                                  "runtime_config": type(job._gca_resource).to_dict(job._gca_resource)["runtime_config"],
                                  "service_account": target.service_account,
                                  "enable_caching": target.enable_caching,
                                  "steps": _steps(template)}, indent=2, default=str))
                return 0
            job = S.submit_vertex(str(template), values, target)
            print(f"submitted: {job.resource_name}")
        else:
            if args.dry_run:
                print(json.dumps({"host": args.host, "parameters": values,
                                  "steps": _steps(template)}, indent=2))
                return 0
            run = S.submit_kfp(str(template), values, host=args.host, experiment=args.experiment,
                               run_name=args.display_name, pipeline_root=args.pipeline_root,
                               enable_caching=not args.no_cache, service_account=args.service_account)
            print(f"created KFP run: {run.run_id}")
    return 0


def _steps(template: Path) -> dict:
    """Per step: image, CPU, memory, GPU (and CustomJob replicas / machine) in the compiled spec."""
    from pipelines.compile import load_spec
    from pipelines.placement import step_summary

    return step_summary(load_spec(template))


def _schedule(args: argparse.Namespace) -> int:
    import tempfile

    from pipelines import schedule as S

    S.validate_cron(args.cron)
    with tempfile.TemporaryDirectory() as tmp:
        template, values = _prepare_cloud(args, Path(tmp))
        if args.dry_run:
            print(json.dumps({"target": args.target, "cron": args.cron, "parameters": values,
                              "steps": _steps(template)}, indent=2))
            return 0
        if args.target == "vertex":
            schedule = S.schedule_vertex(str(template), values, _vertex_target(args), cron=args.cron,
                                         max_concurrent_run_count=args.max_concurrent_runs)
            print(f"created schedule: {schedule.resource_name}")
        else:
            run = S.schedule_kfp(str(template), values, host=args.host, cron=args.cron,
                                 experiment=args.experiment, job_name=args.display_name,
                                 enable_caching=not args.no_cache,
                                 max_concurrency=args.max_concurrent_runs,
                                 service_account=args.service_account)
            print(f"created KFP recurring run: {run.recurring_run_id}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from edgeship.cli.main_job import main_job

    return main_job(_collect_params(args), root=Path(args.root), start_client=not args.no_client,
                    client_timeout=args.client_timeout, stream=sys.stdout,
                    cache=not args.no_cache)
