from modeldeploy.cli import app

app()
