# The demo's infrastructure: built-in terraform_data only, local backend (nothing to download).
resource "terraform_data" "app" {
  input = "v1"
}

resource "terraform_data" "web" {
  input = { replicas = 2 }
}

output "release" {
  value = terraform_data.app.output
}
