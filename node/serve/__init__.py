"""`datanet serve`: the node's HTTP face. An OpenAI-compatible API over every trained adapter
(many adapters on one shared base model, behind one small engine interface), API keys, and the
ModelFactory pages (`node.web`). The routes are thin: what they do lives in the modules beside
them and in the node's other modules, so the CLI and the API share one implementation.
"""
