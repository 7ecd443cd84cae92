"""The ModelDeployment API: pydantic models that are the single source of truth for the CRD
(``make crds``), for ``modeldeploy validate`` and for the operator's reading of specs."""

from modeldeploy.api.base import CelRule, Problem, duration_seconds
from modeldeploy.api.model import DataType, ModelFormat, ModelSpec, TensorSpec
from modeldeploy.api.modeldeployment import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    ModelDeployment,
    ModelDeploymentSpec,
)
from modeldeploy.api.optimization import OptimizationSpec, Precision
from modeldeploy.api.rollout import RolloutSpec, Strategy
from modeldeploy.api.serving import DeploymentMode, ServingSpec
from modeldeploy.api.status import ConditionType, ModelDeploymentStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "CelRule",
    "ConditionType",
    "DataType",
    "DeploymentMode",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ModelFormat",
    "ModelSpec",
    "OptimizationSpec",
    "Precision",
    "Problem",
    "RolloutSpec",
    "ServingSpec",
    "Strategy",
    "TensorSpec",
    "duration_seconds",
]
