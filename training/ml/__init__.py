"""The ML core: plain functions and dataclass configs, no Django. Callable from a worker, a
notebook or a test. Heavy imports (torch, transformers) happen inside the modules that need them."""
