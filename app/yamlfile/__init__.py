"""YAML files as operators write them: safe parsing with positions, problems as path:line:col."""

from app.yamlfile.problems import HasProblems, Problem, Reporter, YPath, read_yaml, suggest
from app.yamlfile.yamlpos import Document, YamlError

__all__ = ["Document", "HasProblems", "Problem", "Reporter", "YPath", "YamlError", "read_yaml", "suggest"]
