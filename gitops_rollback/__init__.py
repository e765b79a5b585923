"""gitops-rollback: tag pushes drive checkpoints and rollbacks of the gitops.rollback collection.

``gitops-rollback trigger`` decides what a pushed ref means and runs the collection's playbook
through ansible-runner; ``watch`` polls a repository for new tags; ``install-hook`` installs a
post-receive hook in a bare repository.
"""

__version__ = "0.1.0"
