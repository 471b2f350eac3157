from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "llmeval.api"
    label = "api"
