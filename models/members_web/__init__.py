"""The pure parts of the members' pages (deployments/web/): which link opens which form
(`forms`), remembering a used link in the action's own transaction (`used`), and what the
personal page shows (`personal`). No web framework here: the app renders what these return."""
