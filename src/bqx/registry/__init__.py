"""Model registry on MLflow, with the approval workflow and promotion history MLflow lacks.

* Registered model per pair: ``bqx-<PAIR>``; each training run logs params, metrics, the
  selected features, the feature-set version and data window, and the artifact directory
  (``artifact.joblib`` + ``meta.json``), then registers it as a new version.
* Versions carry the tag ``approval_status``: ``PendingManualApproval`` -> ``Approved`` /
  ``Rejected``. The approval rule (settings ``train.approval_rule``; default: test R² and
  directional accuracy beat the naive baselines) may approve automatically.
* The alias ``production`` marks the served version. Promotion needs an approved, completely
  registered version with the current feature-set version. Every approve / reject / promote /
  rollback is recorded in the state database (who, when, why, from, to): ``history(pair)``.
* Registration is two-phase: a version is created with ``registration=incomplete`` and marked
  ``complete`` only after all its metadata is written, so a crash in between leaves a version
  that can never be promoted (and no alias moves).

``import mlflow`` costs ~2 s, so it happens lazily, on first use; so does ``import pandas``
(~0.5-1 s): ``bqx models list/show`` need neither (issue 15).
"""

from __future__ import annotations

import getpass
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bqx.config import Settings, load_settings
from bqx.errors import ModelNotFoundError, RegistryError, RegistryUnavailableError
from bqx.infra.crash import crash_point
from bqx.universe import normalize_pair

if TYPE_CHECKING:
    import pandas as pd

    from bqx.training.artifact import ModelArtifact
    from bqx.training.train import TrainResult

EXPERIMENT = "bqx-training"
PRODUCTION = "production"
PENDING, APPROVED, REJECTED = "PendingManualApproval", "Approved", "Rejected"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def model_name(pair: str) -> str:
    return f"bqx-{normalize_pair(pair)}"


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no user database
        return "unknown"


@dataclass
class VersionInfo:
    pair: str
    version: str
    model: str
    approval_status: str
    registration: str
    aliases: list[str]
    feature_set_version: str
    test_r2: float
    test_da: float
    naive_r2: float
    coverage: float
    created: datetime  # UTC
    run_id: str
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()
        }


class Registry:
    """Registry operations. One instance per process; MLflow is imported on first use."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or load_settings()
        self._client: Any = None
        self._state: Any = None
        self._experiment_id: str | None = None

    # ---- plumbing ----------------------------------------------------------------------
    @property
    def uri(self) -> str:
        return self.settings.resolved_tracking_uri

    @property
    def client(self) -> Any:
        if self._client is None:
            self.settings.ensure_home()
            # with an MLflow server, runs print "View run ... at: http://..." on stdout,
            # which would corrupt every --json output
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            import mlflow
            from mlflow import MlflowClient

            mlflow.set_tracking_uri(self.uri)
            mlflow.set_registry_uri(self.uri)
            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    @property
    def state(self) -> Any:
        if self._state is None:
            from bqx.state import open_state

            self._state = open_state(self.settings)
        return self._state

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(EXPERIMENT)
            if exp is None and self.uri.startswith(("http://", "https://")):
                # an MLflow server proxies the artifacts (--serve-artifacts): no local path
                self._experiment_id = self.client.create_experiment(EXPERIMENT)
            elif exp is None:
                root = self.settings.artifact_root.resolve()
                root.mkdir(parents=True, exist_ok=True)
                self._experiment_id = self.client.create_experiment(
                    EXPERIMENT, artifact_location=root.as_uri()
                )
            else:
                self._experiment_id = exp.experiment_id
        return self._experiment_id

    def reads_directly(self) -> bool:
        """True when reads (list, get, aliases, loading a local artifact) need no MLflow
        import: the registry's tables are readable with sqlite3 / SQLAlchemy."""
        from bqx.registry import sqlread

        return sqlread.versions(self.uri, []) is not None

    def ping(self) -> bool:
        if self._client is None and self.reads_directly():
            return True  # the tables answered; no 2-4 s MLflow import for a probe
        try:
            self.client.search_registered_models(max_results=1)
            return True
        except Exception:
            return False

    # ---- logging and registration ------------------------------------------------------
    def log_and_register(
        self, result: TrainResult, *, actor: str | None = None, run_name: str | None = None
    ) -> str:
        """Log a training run to MLflow and register it as a new version of ``bqx-<pair>``.

        Returns the version. Applies the approval rule's verdict (``result.approved``).
        """
        import mlflow

        art = result.artifact
        pair = art.pair
        c = self.client
        exp = self.experiment_id()
        with mlflow.start_run(experiment_id=exp, run_name=run_name or f"{pair}-{art.model}") as run:
            params = {f"model.{k}": v for k, v in art.params.items()}
            params.update(
                {
                    "pair": pair,
                    "model": art.model,
                    "horizon": art.horizon,
                    "target": art.target,
                    "n_features": len(art.features),
                    "feature_set_version": art.feature_set_version,
                    "interval_method": art.conformal.method,
                    "interval_level": art.conformal.level,
                    **{f"selection.{k}": v for k, v in art.selection.items() if k != "importances"},
                }
            )
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics(_flat_metrics(result.metrics, result.seconds))
            mlflow.set_tags(
                {
                    "pair": pair,
                    "feature_set_version": art.feature_set_version,
                    "data_window": str(art.data_window),
                    "approved_by_rule": str(result.approved),
                }
            )
            with tempfile.TemporaryDirectory() as tmp:
                d = art.save(Path(tmp) / "model")
                (Path(tmp) / "model" / "selected_features.txt").write_text(
                    "\n".join(art.features) + "\n"
                )
                if result.extra.get("baseline"):  # monitoring drift reference (issue 12)
                    from bqx.monitoring.baseline import write_baseline

                    write_baseline(Path(tmp) / "model", result.extra["baseline"])
                mlflow.log_artifacts(str(d), artifact_path="model")
            if result.extra.get("baseline"):  # monitoring reference distribution
                mlflow.log_dict(result.extra["baseline"], "baseline/baseline.json")
            source = f"{run.info.artifact_uri}/model"
            run_id = run.info.run_id
        name = model_name(pair)
        try:
            c.get_registered_model(name)
        except Exception:
            c.create_registered_model(
                name, tags={"pair": pair}, description=f"BQX forecaster for {pair}"
            )
        mv = c.create_model_version(
            name,
            source,
            run_id=run_id,
            tags={"approval_status": PENDING, "registration": "incomplete"},
        )
        v = str(mv.version)
        crash_point("registry.version_created")
        t = result.metrics["test"]
        naive = max(b["r2"] for b in result.metrics["baselines_test"].values())
        tags = {
            "pair": pair,
            "model": art.model,
            "feature_set_version": art.feature_set_version,
            "horizon": str(art.horizon),
            "test_r2": f"{t['r2']:.6g}",
            "test_da": f"{t['da']:.6g}",
            "naive_r2": f"{naive:.6g}",
            "coverage": f"{result.metrics['test_coverage']:.4f}",
            "n_features": str(len(art.features)),
            "approval_rule": self.settings.train.approval_rule,
            "approval_rule_result": result.approval_reason,
        }
        for k, val in tags.items():
            c.set_model_version_tag(name, v, k, val)
        crash_point("registry.version_tagged")
        c.set_model_version_tag(name, v, "registration", "complete")
        crash_point("registry.registered")
        # lifecycle event for the event stream (bqx.events relays the outbox to the broker)
        self.state.enqueue_event(
            "models",
            f"registered:{name}:{v}",
            {
                "event": "registered",
                "pair": pair,
                "model_name": name,
                "version": v,
                "model": art.model,
                "feature_set_version": art.feature_set_version,
                "approved_by_rule": bool(result.approved),
                "actor": _actor(actor),
                "at": datetime.now(UTC).isoformat(),
            },
        )
        if result.approved:
            self._set_approval(pair, v, APPROVED, actor or "approval-rule", result.approval_reason)
        return v

    # ---- queries -----------------------------------------------------------------------
    def versions(self, pair: str | None = None) -> list[VersionInfo]:
        fast = _fast_versions(self.uri, pair)  # no mlflow import (bqx.registry.sqlread)
        if fast is not None:
            return fast
        c = self.client
        flt = f"name = '{model_name(pair)}'" if pair else "name LIKE 'bqx-%'"
        out = []
        aliases: dict[str, dict[str, list[str]]] = {}
        for mv in c.search_model_versions(flt):
            info = _info(mv)
            if mv.name not in aliases:  # search results do not carry aliases: ask the model
                amap: dict[str, list[str]] = {}
                for a, ver in (c.get_registered_model(mv.name).aliases or {}).items():
                    amap.setdefault(str(ver), []).append(a)
                aliases[mv.name] = amap
            info.aliases = aliases[mv.name].get(info.version, [])
            out.append(info)
        return sorted(out, key=lambda i: (i.pair, int(i.version)))

    def list_models(self, pair: str | None = None) -> pd.DataFrame:
        import pandas as pd

        rows = [i.as_dict() for i in self.versions(pair)]
        return pd.DataFrame(rows)

    def get(
        self, pair: str, version: str | int | None = None, alias: str | None = None
    ) -> VersionInfo:
        name = model_name(pair)
        fast = _fast_get(self.uri, pair, version, alias)
        if fast is not None:
            return fast
        c = self.client
        try:
            if version is not None:
                mv = c.get_model_version(name, str(version))
            else:
                mv = c.get_model_version_by_alias(name, alias or PRODUCTION)
        except Exception as e:
            _raise_if_unavailable(e, self.uri)
            what = f"version {version}" if version is not None else f"alias '{alias or PRODUCTION}'"
            raise ModelNotFoundError(
                f"no {what} of {name}",
                hint=f"see `bqx models list --pair {normalize_pair(pair)}`; train with `bqx train --pairs {normalize_pair(pair)}`",
            ) from e
        return _info(mv)

    def production_version(self, pair: str) -> str | None:
        try:
            return self.get(pair, alias=PRODUCTION).version
        except ModelNotFoundError:
            return None

    def history(self, pair: str) -> pd.DataFrame:
        return self.state.promotion_history(normalize_pair(pair))

    def history_records(self, pair: str) -> list[dict[str, Any]]:
        """:meth:`history` as dicts, without importing pandas (nor SQLAlchemy and the
        state package for a SQLite state database: ``bqx models history``)."""
        from bqx.registry import sqlread

        fast = sqlread.promotion_records(self.settings.resolved_state_url, normalize_pair(pair))
        return fast if fast is not None else self.state.promotion_records(normalize_pair(pair))

    # ---- approval ------------------------------------------------------------------------
    def _set_approval(
        self, pair: str, version: str, status: str, actor: str, reason: str | None
    ) -> None:
        # Approval is atomic with its history (issue 18.15): the history row is written
        # first, ``approval_status`` last, and :meth:`promote` needs both. A crash anywhere
        # in between leaves a version that is not promotable (approve it again), never an
        # "Approved" version without its who/when/why.
        name = model_name(pair)
        c = self.client
        self.state.record_promotion(
            normalize_pair(pair), name, action="approve" if status == APPROVED else "reject",
            to_version=version, actor=actor, reason=reason,
        )  # fmt: skip
        crash_point("registry.approval.history_written")
        c.set_model_version_tag(name, version, "approval_by", actor)
        c.set_model_version_tag(name, version, "approval_at", datetime.now(UTC).isoformat())
        if reason:
            c.set_model_version_tag(name, version, "approval_reason", reason[:500])
        crash_point("registry.approval.tags_written")
        c.set_model_version_tag(name, version, "approval_status", status)

    def approval_recorded(self, pair: str, version: str | int) -> bool:
        """True when the latest approve/reject event of ``version`` in the history is an
        approval (the approval tag alone is not enough: see :meth:`_set_approval`)."""
        h = self.state.promotion_history(normalize_pair(pair))
        if not len(h):
            return False
        h = h[
            h["action"].isin(["approve", "reject"]) & (h["to_version"].astype(str) == str(version))
        ]
        return bool(len(h)) and str(h["action"].iloc[-1]) == "approve"

    def approve(
        self, pair: str, version: str | int, *, actor: str | None = None, reason: str | None = None
    ) -> VersionInfo:
        info = self.get(pair, version)
        if info.registration != "complete":
            raise RegistryError(
                f"{model_name(pair)} version {version} was not completely registered; retrain it"
            )
        self._set_approval(pair, str(version), APPROVED, _actor(actor), reason or "manual approval")
        return self.get(pair, version)

    def reject(
        self, pair: str, version: str | int, *, actor: str | None = None, reason: str | None = None
    ) -> VersionInfo:
        info = self.get(pair, version)
        if PRODUCTION in info.aliases:
            raise RegistryError(
                f"{model_name(pair)} version {version} is in production",
                hint=f"roll back first: `bqx models rollback {normalize_pair(pair)}`",
            )
        self._set_approval(
            pair, str(version), REJECTED, _actor(actor), reason or "manual rejection"
        )
        return self.get(pair, version)

    # ---- promotion ---------------------------------------------------------------------
    def promote(
        self,
        pair: str,
        version: str | int,
        *,
        actor: str | None = None,
        reason: str | None = None,
        action: str = "promote",
    ) -> VersionInfo:
        """Point the ``production`` alias at ``version`` and record it."""
        from bqx.features import feature_set_version

        pair = normalize_pair(pair)
        v = str(version)
        info = self.get(pair, v)
        if info.registration != "complete":
            raise RegistryError(
                f"{model_name(pair)} version {v} was not completely registered; retrain it"
            )
        if info.approval_status != APPROVED:
            raise RegistryError(
                f"{model_name(pair)} version {v} is {info.approval_status}, not Approved",
                hint=f"`bqx models approve {pair} {v}` first (after reviewing `bqx models show {pair} --version {v}`)",
            )
        if not self.approval_recorded(pair, v):
            raise RegistryError(
                f"{model_name(pair)} version {v} is tagged Approved but the approval is not in "
                "the promotion history (an interrupted approval?)",
                hint=f"approve it again: `bqx models approve {pair} {v} --reason ...`",
            )
        if info.feature_set_version != feature_set_version():
            raise RegistryError(
                f"version {v} was trained on feature set {info.feature_set_version}, the pipeline is now "
                f"{feature_set_version()}: it cannot be served",
                hint=f"retrain: `bqx train --pairs {pair}`",
            )
        prev = self.production_version(pair)
        if prev == v:
            return info
        c = self.client
        name = model_name(pair)
        c.set_registered_model_alias(name, PRODUCTION, v)
        try:
            self.state.record_promotion(
                pair,
                name,
                action=action,
                from_version=prev,
                to_version=v,
                actor=_actor(actor),
                reason=reason,
            )
        except Exception:
            # keep alias and history consistent: undo the alias move
            if prev is None:
                c.delete_registered_model_alias(name, PRODUCTION)
            else:
                c.set_registered_model_alias(name, PRODUCTION, prev)
            raise
        return self.get(pair, v)

    def rollback(
        self, pair: str, *, actor: str | None = None, reason: str | None = None
    ) -> VersionInfo:
        """Return ``production`` to the version that served before the current one."""
        pair = normalize_pair(pair)
        prev = self.state.previous_production(pair)
        if prev is None:
            raise RegistryError(
                f"{model_name(pair)} has no earlier production version to roll back to"
            )
        return self.promote(pair, prev, actor=actor, reason=reason or "rollback", action="rollback")

    # ---- loading -----------------------------------------------------------------------
    def load(
        self, pair: str, alias: str | None = PRODUCTION, version: str | int | None = None
    ) -> ModelArtifact:
        """The artifact of a version (by number) or alias (default ``production``)."""
        from bqx.registry.sqlread import local_dir
        from bqx.training.artifact import ModelArtifact

        info = self.get(pair, version, alias if version is None else None)
        t0 = time.perf_counter()
        local = local_dir(info.source)  # a local artifact store: read in place, no mlflow
        if local is None:
            import mlflow.artifacts

            local = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=info.source, tracking_uri=self.uri)
            )
        art = ModelArtifact.load(local)
        art.version = info.version
        art.selection = {**art.selection, "load_seconds": time.perf_counter() - t0}
        return art


def _fast_versions(uri: str, pair: str | None) -> list[VersionInfo] | None:
    from types import SimpleNamespace

    from bqx.registry import sqlread

    rows = sqlread.versions(uri, [model_name(pair)] if pair else None)
    if rows is None:
        return None
    out = [_info(SimpleNamespace(**{**r, "creation_timestamp": r["creation_time"]})) for r in rows]
    return sorted(out, key=lambda i: (i.pair, int(i.version)))


def _fast_get(
    uri: str, pair: str, version: str | int | None, alias: str | None
) -> VersionInfo | None:
    """One version by number or alias from the tables; None when not found there (the MLflow
    client then answers, with its own error)."""
    infos = _fast_versions(uri, pair)
    for i in infos or []:
        if (version is not None and i.version == str(version)) or (
            version is None and (alias or PRODUCTION) in i.aliases
        ):
            return i
    return None


def _raise_if_unavailable(e: BaseException, uri: str) -> None:
    """Only "does not exist" is a missing model (404); any other failure of MLflow (server
    down, auth, a locked SQLite file, a timeout) is the registry being unavailable (503)."""
    from bqx.infra.outage import mlflow_not_found
    from bqx.infra.redact import redact

    if mlflow_not_found(e):
        return
    raise RegistryUnavailableError(
        f"model registry {redact(uri)} failed: {redact(str(e).strip()[:300])}",
        hint="check that the MLflow tracking server (BQX_TRACKING_URI) is reachable",
    ) from e


def _info(mv: Any) -> VersionInfo:
    tags = dict(mv.tags or {})

    def f(k: str) -> float:
        try:
            return float(tags.get(k, "nan"))
        except ValueError:
            return float("nan")

    return VersionInfo(
        pair=tags.get("pair", mv.name.removeprefix("bqx-")),
        version=str(mv.version),
        model=tags.get("model", ""),
        approval_status=tags.get("approval_status", PENDING),
        registration=tags.get("registration", "incomplete"),
        aliases=list(getattr(mv, "aliases", []) or []),
        feature_set_version=tags.get("feature_set_version", ""),
        test_r2=f("test_r2"),
        test_da=f("test_da"),
        naive_r2=f("naive_r2"),
        coverage=f("coverage"),
        created=_EPOCH + timedelta(milliseconds=int(mv.creation_timestamp)),
        run_id=mv.run_id or "",
        source=mv.source,
    )


def _flat_metrics(metrics: dict[str, Any], seconds: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for seg in ("train", "val", "test"):
        for k, v in metrics[seg].items():
            out[f"{seg}_{k}"] = float(v)
    for seg in ("baselines_val", "baselines_test"):
        for b, d in metrics[seg].items():
            for k, v in d.items():
                if k != "n":
                    out[f"{seg}_{b}_{k}"] = float(v)
    out["test_coverage"] = float(metrics["test_coverage"])
    out.update({f"seconds_{k}": float(v) for k, v in seconds.items()})
    return {k: v for k, v in out.items() if v == v}  # MLflow rejects NaN in some stores


def load(
    pair: str,
    alias: str = PRODUCTION,
    *,
    version: str | int | None = None,
    settings: Settings | None = None,
) -> ModelArtifact:
    """Load a model artifact from the registry (``bqx.registry.load("EURUSD")``)."""
    return Registry(settings).load(pair, alias, version)
