"""The model registry: policy and reward model versions with lineage, the deployed-policy pointer
(deploy, roll back) and generation jobs that turn the deployed policy's answers into ranking tasks."""
