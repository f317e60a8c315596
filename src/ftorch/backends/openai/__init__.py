"""provider=openai: OpenAI's fine-tuning API (backend.py) and evaluating its models through the API (eval.py)."""
