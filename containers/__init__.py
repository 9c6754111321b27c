"""The Docker driver, the container specs and the offline image build."""
