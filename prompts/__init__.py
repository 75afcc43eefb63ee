"""Prompt templates as versioned files (`prompts/<name>.md`) and their loader."""

from prompts.loader import PromptError, PromptTemplate, list_prompts, load_prompt

__all__ = ["PromptError", "PromptTemplate", "list_prompts", "load_prompt"]
