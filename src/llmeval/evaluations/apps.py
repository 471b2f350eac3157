from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    name = "llmeval.evaluations"
    label = "evaluations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from llmeval import checks  # noqa: F401  (registers the system checks)
