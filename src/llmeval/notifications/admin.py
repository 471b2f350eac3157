"""Admin for notifications: read-only, since the send task owns their state."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from llmeval.notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin[Notification]):
    list_display = ("id", "status", "recipient", "attempts", "created_at", "sent_at")
    list_filter = ("status", "created_at")
    search_fields = ("=id", "=evaluation__id", "recipient", "provider_message_id")
    list_select_related = ("evaluation",)
    ordering = ("-created_at",)
    show_full_result_count = False

    def get_readonly_fields(
        self, request: HttpRequest, obj: Notification | None = None
    ) -> list[str]:
        return [field.name for field in Notification._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
