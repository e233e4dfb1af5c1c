"""Inventory: kinds declared as data, one streaming collector, plain records.

See :mod:`awsops.inventory.specs` for the kinds, :mod:`awsops.inventory.collector`
for the run over targets and :mod:`awsops.inventory.records` for record shapes.
"""

from awsops.inventory.collector import (
    InventoryRequest,
    InventoryRun,
    InventorySummary,
    Progress,
    TargetCount,
    collect,
)
from awsops.inventory.filters import Filter, build_params, parse_filters
from awsops.inventory.records import ShapeContext, shape_instance
from awsops.inventory.specs import KINDS, AttributeDecl, Field, FilterDecl, KindSpec, get_kind

__all__ = [
    "KINDS",
    "AttributeDecl",
    "Field",
    "Filter",
    "FilterDecl",
    "InventoryRequest",
    "InventoryRun",
    "InventorySummary",
    "KindSpec",
    "Progress",
    "ShapeContext",
    "TargetCount",
    "build_params",
    "collect",
    "get_kind",
    "parse_filters",
    "shape_instance",
]
