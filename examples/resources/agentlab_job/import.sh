# A job is imported by its ID, as `agentlab-reaper jobs` lists it.
terraform import agentlab_job.tests job-5f0c2a9e41d87b36
