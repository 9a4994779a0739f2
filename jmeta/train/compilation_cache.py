"""JAX's persistent compilation cache, turned on by the trainer.

A conv4 meta-step takes seconds to tens of seconds to compile, and a notebook
restart or a second ``jmeta`` command pays it again. JAX can keep compiled
programs on disk and reload them when the same program (same code, shapes,
flags, JAX version and device) is compiled again. :func:`jmeta.train.train`,
:func:`jmeta.train.evaluate_checkpoint` and :func:`jmeta.train.predict` (and so
``jmeta train``, ``jmeta eval`` and ``jmeta predict``) call
:func:`enable_compilation_cache` before they compile anything:

* a cache you configured yourself (``jax.config.update("jax_compilation_cache_dir",
  ...)`` or ``$JAX_COMPILATION_CACHE_DIR``) is left as it is;
* ``$JMETA_COMPILATION_CACHE=off`` turns it off; any other value is the folder;
* otherwise the folder is ``xla/`` in jmeta's cache folder (``$JMETA_CACHE``,
  else ``$XDG_CACHE_HOME/jmeta``, else ``~/.cache/jmeta``; see
  :func:`jmeta.datasets.cache.cache_root`), limited to ``MAX_BYTES`` (least
  recently used programs are evicted first).

Only programs that took at least a second to compile are stored (JAX's
``jax_persistent_cache_min_compile_time_secs``). A folder that cannot be written
costs only the caching: one :class:`CompilationCacheWarning` names it. The
cache is trusted code: do not point it at a folder that others can write.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import jax

from jmeta.datasets.cache import cache_root

CACHE_ENV = "JMETA_COMPILATION_CACHE"
OFF = frozenset({"off", "0", "false", "no", "none"})
MAX_BYTES = 4 << 30  # 4 GiB
_DIR, _MAX = "jax_compilation_cache_dir", "jax_compilation_cache_max_size"  # JAX's options


class CompilationCacheWarning(UserWarning):
    """The persistent compilation cache could not be used; programs are compiled as usual."""


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache (once per process); its folder, or ``None``.

    Returns:
      The folder compiled programs are kept in (yours, if you configured one),
      or ``None`` when ``$JMETA_COMPILATION_CACHE`` is ``off`` or the folder
      cannot be written (then a :class:`CompilationCacheWarning` says why).

    Example:
      >>> import os
      >>> from jmeta.train.compilation_cache import enable_compilation_cache
      >>> os.environ["JMETA_COMPILATION_CACHE"] = "off"
      >>> enable_compilation_cache() is None
      True
      >>> del os.environ["JMETA_COMPILATION_CACHE"]
    """
    configured = getattr(jax.config, _DIR)
    if configured:
        return Path(configured)
    setting = os.environ.get(CACHE_ENV, "").strip()
    if setting.lower() in OFF:
        return None
    folder = Path(setting).expanduser() if setting else cache_root() / "xla"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        warnings.warn(
            f"could not write to the compilation cache folder {folder} "
            f"({err.strerror or err}); compiling without a persistent cache. Set "
            f"${CACHE_ENV} to a writable folder, or to off",
            CompilationCacheWarning,
            stacklevel=2,
        )
        return None
    if getattr(jax.config, _MAX) == -1:
        jax.config.update(_MAX, MAX_BYTES)
    jax.config.update(_DIR, str(folder))
    return folder
