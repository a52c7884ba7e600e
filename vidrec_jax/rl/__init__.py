"""Reinforcement learning for long-term satisfaction: user simulator, logged slates, REINFORCE."""
