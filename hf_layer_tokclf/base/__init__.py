"""The ground floor: what every wing may use, and the guarantees every entry point passes through.

- code_consent: whether a model folder's own code may run (the caller's consent, never a prompt).
- redaction: secrets masked in every file, message and log the package writes.
- files: atomic files and safe opening (a temporary file renamed into place, ``O_EXCL``, no symlinks followed);
  every rename and temporary file of the package is here.
- locks: the run lock, one run at a time on an output.
- manifest: the names of what runs write, and the manifest listing what a run wrote in a folder.
- outputs: the one policy for what a run may write or delete (output files and folders, claims, overwrites).
- locations: Hub ids and model folders, told apart with a clear error.
- defaults, extras, niceties, stages: shared defaults, optional extras, small conveniences, timed stages.

May import: nothing of the package.
"""
