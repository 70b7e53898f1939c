"""Process helpers shared by the repository's standalone tools (``condor_pool``, ``container_runtime``,
``pack_env``): running a command with a one-line error (``commands``), where a command line shows its
package's log (``cli``), and finding, waiting for and stopping processes through /proc, never by process
name (``pids``).

Standard library only, like its users: their shims in ``scripts/`` run with the system ``python3`` before
the project's venv exists.
"""
