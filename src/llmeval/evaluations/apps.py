from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    name = "llmeval.evaluations"
    label = "evaluations"
    default_auto_field = "django.db.models.BigAutoField"
