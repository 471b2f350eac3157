"""Admin for evaluations: searchable and filterable, and read-only because workers own the rows."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from llmeval.evaluations.models import Evaluation


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin[Evaluation]):
    list_display = ("id", "status", "model", "owner", "attempts", "created_at", "completed_at")
    list_filter = ("status", "model", "created_at")
    search_fields = ("=id", "owner__username", "model", "provider_request_id")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    ordering = ("-id",)
    show_full_result_count = False
    exclude = ("request_fingerprint",)

    def get_readonly_fields(self, request: HttpRequest, obj: Evaluation | None = None) -> list[str]:
        return [
            field.name for field in Evaluation._meta.fields if field.name != "request_fingerprint"
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
