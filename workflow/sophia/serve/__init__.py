"""`sophia serve`: one GGUF model (llama.cpp) behind Ollama's and OpenAI's HTTP APIs, for editors."""
